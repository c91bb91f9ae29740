"""Plotly rate-distortion figures of runs, each codec and NeCGS variant in one colour everywhere.

Rows come from :func:`necgs.evaluation.runner.evaluate`'s summary (or a stored run's,
:mod:`necgs.evaluation.runs`); the page, ``necgs evaluate``'s HTML files and the benchmark
PNGs all draw through :func:`rd_figure`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

#: Fixed colours of the codecs (the page legend, the figures and every view use these).
CODEC_COLORS = {
    "necgs": "#1f77b4",
    "draco": "#ff7f0e",
    "decimate-draco": "#2ca02c",
    "pointcloud-spsr": "#9467bd",
    "quantdeepsdf": "#8c564b",
    "gpcc": "#e377c2",
    "gpcc-trisoup": "#d62728",
    "vpcc": "#bcbd22",
    "pcgcv2": "#17becf",
}
#: Colours of NeCGS variants in an ablation, in variant order (the reference first).
VARIANT_COLORS = ("#1f77b4", "#d62728", "#9467bd", "#17becf", "#e377c2", "#8c564b", "#bcbd22", "#7f7f7f")


def series_color(series: str, order: Sequence[str] = ()) -> str:
    """The stable colour of a plotted series: a codec's own colour, or a variant's by its position in ``order``."""
    if series in order:
        return VARIANT_COLORS[list(order).index(series) % len(VARIANT_COLORS)]
    return CODEC_COLORS.get(series, "#7f7f7f")


def rd_figure(
    summary: pd.DataFrame,
    metric: str = "cd",
    highlight: str | None = None,
    earlier: Sequence[pd.DataFrame] = (),
    overlays: Sequence[tuple[str, pd.DataFrame]] = (),
) -> go.Figure:
    """Plotly RD figure: ``metric`` (cd or f1_005) against the ratio vs binary PLY, log x.

    Rows are drawn one trace per ``series`` when the summary has that column (e.g. one per
    ablation variant), else one per codec; each series keeps one colour
    (:func:`series_color`, variants in order of appearance) in every figure.

    Args:
        summary: Summary rows of one run (the ``floor`` row becomes a dashed line).
        metric: "cd" or "f1_005" (also "nc", "f1_01").
        highlight: A codec whose points are marked larger (this run's point).
        earlier: Summaries of earlier runs of the same set, drawn faintly.
        overlays: (name, summary) of other runs, drawn dotted and faint, named by ``name``.
    """
    titles = {
        "cd": "Chamfer distance (lower is better)",
        "f1_005": "F1@0.005 (higher is better)",
        "nc": "normal consistency",
        "f1_01": "F1@0.01",
    }
    fig = go.Figure()
    named = [*((f"earlier run {k + 1}", old) for k, old in enumerate(earlier)), *overlays]
    for name, old in named:
        old = _drawable(old, metric)
        for series, grp in old.groupby(_series(old), sort=False):
            grp = grp.sort_values("ratio_ply")
            fig.add_trace(
                go.Scatter(
                    x=grp.ratio_ply,
                    y=grp[metric],
                    mode="lines+markers",
                    opacity=0.45,
                    name=f"{series} ({name})",
                    text=grp.label,
                    line={"dash": "dot"},
                    marker={"symbol": "diamond-open", "color": series_color(str(series))},
                    hovertemplate="%{text}<br>ratio %{x:.1f}x<br>" + metric + " %{y:.4g}",
                )
            )
    ok = _drawable(summary, metric)
    keys = _series(ok)
    variants = [k for k in dict.fromkeys(_series(summary[summary.codec != "floor"])) if k not in CODEC_COLORS]
    for series, grp in ok.groupby(keys, sort=False):
        grp = grp.sort_values("ratio_ply")
        size = 13 if highlight in (series, grp.codec.iloc[0]) else 8
        color = series_color(str(series), variants)
        fig.add_trace(
            go.Scatter(
                x=grp.ratio_ply,
                y=grp[metric],
                mode="lines+markers",
                name=str(series),
                marker={"size": size, "color": color},
                line={"color": color},
                text=grp.label,
                customdata=[f"{r.codec}::{r.label}" for r in grp.itertuples()],
                hovertemplate="%{text}<br>ratio %{x:.1f}x<br>" + metric + " %{y:.4g}<extra>" + str(series) + "</extra>",
            )
        )
    every = summary[(summary.status == "ok") & (summary.codec != "floor")]
    for series in dict.fromkeys(_series(every)):
        if series not in set(keys):  # decoded no surface at all: named in the legend, not drawn
            fig.add_trace(
                go.Scatter(
                    x=[None],
                    y=[None],
                    mode="markers",
                    name=f"{series} (no surface)",
                    marker={"color": series_color(str(series), variants), "symbol": "x"},
                )
            )
    floor = summary[summary.codec == "floor"]
    if len(floor) and metric in floor:
        fig.add_hline(
            y=float(floor[metric].iloc[0]),
            line_dash="dash",
            line_color="gray",
            annotation_text="metric floor (original vs itself)",
        )
    fig.update_layout(
        xaxis_title="compression ratio vs binary PLY (log)",
        yaxis_title=titles.get(metric, metric),
        xaxis_type="log",
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 40, "b": 50},
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0, "font": {"size": 11}},
        title=titles.get(metric, metric),
    )
    if metric == "cd":
        drawn = [ok[metric], floor[metric], *(_drawable(old, metric)[metric] for _, old in named)]
        values = [v for col in drawn for v in col.astype(float) if np.isfinite(v) and v > 0]
        if values:
            fig.update_yaxes(type="log", range=[np.log10(min(values) * 0.85), np.log10(max(values) * 1.2)])
    return fig


def series_by_preset(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with a ``series`` column for a benchmark that sweeps several presets (the
    shipped one): each preset's NeCGS settings are one line (``necgs quick``, ``necgs standard``),
    every other codec its own, so the figure does not join points of different presets into one
    zigzag curve."""
    out = summary.copy()
    out["series"] = out.codec
    nec = out.codec == "necgs"
    if "setting" in out and nec.any():
        presets = out.loc[nec, "setting"].map(lambda s: str(stored_setting(s).get("preset", "quick")))
        out.loc[nec, "series"] = "necgs " + presets
    return out


def stored_setting(setting) -> dict:
    """A summary row's stored setting (JSON text or dict) as a dict (empty if unreadable)."""
    try:
        value = json.loads(setting) if isinstance(setting, str) else setting
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _series(rows: pd.DataFrame) -> pd.Series:
    """The series each row is drawn in: its ``series`` column, else its codec."""
    return rows["series"] if "series" in rows else rows["codec"]


def _drawable(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows a figure draws: successful codec rows with a finite ``metric`` (a partly empty
    decode is drawn at its median CD, labelled with the count of empty shapes)."""
    ok = summary[(summary.status == "ok") & (summary.codec != "floor")].copy()
    if metric == "cd" and "cd_median" in ok:  # some shapes decoded empty: the mean is inf, draw the median
        partial = ~np.isfinite(ok.cd.astype(float)) & np.isfinite(ok.cd_median.astype(float))
        ok.loc[partial, "cd"] = ok.loc[partial, "cd_median"]
        ok.loc[partial, "label"] = [
            f"{r.label} (median; {int(r.empty_shapes)} shapes empty)" for r in ok[partial].itertuples()
        ]
    return ok[np.isfinite(ok[metric].astype(float))]  # a setting with no surface at all: not drawn
