"""The rate-distortion runner, its SQLite results store and the Plotly figures.

:func:`evaluate` runs every (codec, setting) on one set in one run: encode (timed),
decode (timed), the paper's metrics per shape against the originals, and the rate
(whole output bytes; ratios against the source files and a canonical binary PLY; bits
per vertex). A ``floor`` row (each original against itself, two independent samplings)
always sits beside the results. Unavailable codecs and failing settings are recorded,
never fatal.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from necgs.baselines.base import get_codec
from necgs.errors import NecgsError
from necgs.io.loading import LoadedSet, load_meshes
from necgs.io.mesh import Mesh
from necgs.metrics import MeshMetrics, compare_meshes, mean_metrics, sampling_floor
from necgs.paths import cache_dir
from necgs.rate import rate_report

#: progress(stage text, fraction of the whole run done)
RunProgress = Callable[[str, float], None]


@dataclass(frozen=True)
class StageEvent:
    """Where a run is, for progress displays that weight the stages by their cost.

    Attributes:
        index: Position of the (codec, setting) in the run's plan; -1 for the metric floor.
        codec: Codec name ("floor" for the metric floor).
        label: The setting's label.
        phase: "encode", "decode" or "metrics".
        stage: The codec's own stage within the phase (NeCGS encodes through "fit", "train",
            "code"); the phase name when the codec reports none.
        fraction: Done fraction of that stage, in [0, 1].
    """

    index: int
    codec: str
    label: str
    phase: str
    stage: str
    fraction: float


#: on_stage(event): structured progress, beside the plain ``progress`` callback.
StageCallback = Callable[[StageEvent], None]

SUMMARY_COLUMNS = [
    "dataset",
    "codec",
    "label",
    "setting",
    "status",
    "bytes",
    "ratio_files",
    "ratio_ply",
    "bits_per_vertex",
    "cd",
    "nc",
    "f1_005",
    "f1_01",
    "cd_median",
    "empty_shapes",
    "encode_s",
    "decode_ms_per_shape",
    "n_shapes",
    "error",
]


@dataclass
class EvaluationResult:
    """Summary rows (one per codec and setting), per-shape rows, and codec statuses."""

    dataset: str
    summary: pd.DataFrame
    per_shape: pd.DataFrame
    statuses: dict[str, str] = field(default_factory=dict)
    decoded: dict[tuple[str, str], list[Mesh]] = field(default_factory=dict)
    meshes: list[Mesh] = field(default_factory=list)
    blobs: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)


class Cancelled(NecgsError):
    """The run was cancelled by the user."""


def _load(dataset) -> tuple[str, LoadedSet]:
    if isinstance(dataset, LoadedSet):
        return "custom", dataset
    from necgs.io.datasets import resolve_dataset

    path = resolve_dataset(dataset)
    return str(dataset), load_meshes(path)


def evaluate(
    dataset,
    codecs: Sequence[str],
    *,
    settings: dict[str, list[dict]] | None = None,
    n_samples: int = 100_000,
    seed: int = 0,
    limit: int | None = None,
    progress: RunProgress | None = None,
    cancel: threading.Event | None = None,
    keep_decoded: bool = False,
    on_stage: StageCallback | None = None,
) -> EvaluationResult:
    """Run the rate-distortion sweep of several codecs on one set.

    Args:
        dataset: A data set name, folder, zip, or a :class:`LoadedSet`.
        codecs: Registry names (``necgs``, ``draco``, ``decimate-draco``...).
        settings: Per codec, the settings to run (default: each codec's sweep).
        n_samples: Surface samples per metric evaluation (paper: 1e5).
        seed: Metric sampling seed.
        limit: Use only the first ``limit`` shapes.
        progress: Callback (stage text, fraction done).
        cancel: Set it to stop between stages (raises :class:`Cancelled`).
        keep_decoded: Keep the decoded meshes and blobs (for viewers and downloads).
        on_stage: Structured progress (:class:`StageEvent`), e.g. for a display weighting
            the stages by their cost.

    Returns:
        The :class:`EvaluationResult`.
    """
    name, loaded = _load(dataset)
    meshes = loaded.meshes[:limit] if limit else loaded.meshes
    if not meshes:
        raise NecgsError(f"{dataset}: no usable mesh")
    source_bytes = sum(loaded.source_bytes[: len(meshes)])
    instances = {c: get_codec(c) for c in codecs}
    plan = []
    statuses = {}
    for c, codec in instances.items():
        ok, why = codec.available()
        statuses[c] = "ok" if ok else f"not available: {why}"
        if ok:
            plan += [(c, s) for s in (settings or {}).get(c, codec.sweep())]
    rows, shape_rows = [], []
    result = EvaluationResult(name, pd.DataFrame(), pd.DataFrame(), statuses, meshes=meshes)
    emit = on_stage or (lambda event: None)
    emit(StageEvent(-1, "floor", "", "metrics", "metrics", 0.0))
    floor = [sampling_floor(m, n_samples, seed) for m in meshes]
    emit(StageEvent(-1, "floor", "", "metrics", "metrics", 1.0))
    rows.append(
        _row(name, "floor", "metric floor (original vs itself)", {}, "ok", None, source_bytes, meshes, floor, 0.0, 0.0)
    )
    for k, (c, setting) in enumerate(plan):
        _check_cancel(cancel)
        codec = instances[c]
        label = codec.setting_label(setting)
        step = _stepper(progress, emit, k, len(plan), c, label)
        step("encode", "encode", 0.0, 0.0)
        try:
            t = time.perf_counter()
            blobs = codec.encode(meshes, setting, progress=lambda st, f, step=step: step("encode", st, f, 0.7 * f))
            enc = time.perf_counter() - t
            _check_cancel(cancel)
            t = time.perf_counter()
            decoded = codec.decode(
                blobs, setting, progress=lambda st, f, step=step: step("decode", st, f, 0.7 + 0.2 * f)
            )
            dec_ms = 1000 * (time.perf_counter() - t) / len(meshes)
            step("metrics", "metrics", 0.0, 0.9)
            per = [compare_meshes(r, g, n_samples, seed) for r, g in zip(decoded, meshes)]
            step("metrics", "metrics", 1.0, 1.0)
        except Cancelled:
            raise
        except KeyboardInterrupt:
            raise Cancelled("evaluation cancelled") from None
        except Exception as exc:  # a failing setting is recorded, the run goes on
            rows.append(
                _row(
                    name,
                    c,
                    label,
                    setting,
                    "error",
                    None,
                    source_bytes,
                    meshes,
                    None,
                    0,
                    0,
                    error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                )
            )
            continue
        total = sum(len(b) for b in blobs)
        rows.append(_row(name, c, label, setting, "ok", total, source_bytes, meshes, per, enc, dec_ms))
        for m, metric, fl in zip(meshes, per, floor):
            shape_rows.append(
                {"dataset": name, "codec": c, "label": label, "shape": m.name, **metric.to_dict(), "floor_cd": fl.cd}
            )
        if keep_decoded:
            result.decoded[(c, label)] = decoded
            result.blobs[(c, label)] = blobs
    result.summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    result.per_shape = pd.DataFrame(shape_rows)
    if progress:
        progress("done", 1.0)
    return result


def _stepper(progress: RunProgress | None, emit: StageCallback, k: int, n_plan: int, codec: str, label: str):
    """step(phase, stage text, stage fraction, fraction of this setting) -> both callbacks."""

    def step(phase: str, stage: str, frac: float, setting_frac: float) -> None:
        words = str(stage).split()
        emit(StageEvent(k, codec, label, phase, words[0] if words else phase, min(max(float(frac), 0.0), 1.0)))
        if progress is not None:
            progress(f"{codec} [{label}] {stage}", (k + min(max(setting_frac, 0.0), 1.0)) / max(n_plan, 1))

    return step


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("evaluation cancelled")


def _row(
    dataset,
    codec,
    label,
    setting,
    status,
    total,
    source_bytes,
    meshes,
    per: list[MeshMetrics] | None,
    enc,
    dec_ms,
    error="",
) -> dict:
    """One summary row; ``per`` holds the per-shape metrics (mean CD is inf if any shape decoded empty,
    so the row also carries the median CD and the count of shapes without a surface)."""
    row = {
        "dataset": dataset,
        "codec": codec,
        "label": label,
        "setting": json.dumps(setting, sort_keys=True),
        "status": status,
        "error": error,
        "n_shapes": len(meshes),
        "encode_s": enc,
        "decode_ms_per_shape": dec_ms,
    }
    if total:
        r = rate_report(total, source_bytes, meshes)
        row.update(
            bytes=r.compressed_bytes,
            ratio_files=r.ratio_files,
            ratio_ply=r.ratio_ply,
            bits_per_vertex=r.bits_per_vertex,
        )
    elif codec == "floor":
        r = rate_report(1, source_bytes, meshes)
        row.update(bytes=r.ply_bytes, ratio_files=source_bytes / r.ply_bytes, ratio_ply=1.0, bits_per_vertex=96.0)
    if per is not None:
        cds = np.array([m.cd for m in per], dtype=np.float64)
        row.update(
            mean_metrics(per).to_dict(), cd_median=float(np.median(cds)), empty_shapes=int((~np.isfinite(cds)).sum())
        )
    return row


# ---------------------------------------------------------------------------- outputs
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
):
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
    import plotly.graph_objects as go

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


def write_results(result: EvaluationResult, out_dir: str | Path) -> Path:
    """summary.csv, per_shape.csv, results.json, rd_cd.html and rd_f1.html under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.summary.to_csv(out / "summary.csv", index=False)
    result.per_shape.to_csv(out / "per_shape.csv", index=False)
    payload = {
        "dataset": result.dataset,
        "statuses": result.statuses,
        "summary": json.loads(result.summary.to_json(orient="records")),
        "per_shape": json.loads(result.per_shape.to_json(orient="records")),
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    rd_figure(result.summary, "cd").write_html(out / "rd_cd.html", include_plotlyjs="cdn")
    rd_figure(result.summary, "f1_005").write_html(out / "rd_f1.html", include_plotlyjs="cdn")
    return out


class ResultsStore:
    """SQLite registry of runs (an embedded default; no server).

    Tables: ``runs(id, created, dataset, config, status, archive)``, ``rows`` (summary rows
    as JSON) and ``shape_rows`` (per-shape rows as JSON).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else cache_dir() / "results.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(
                "CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL, dataset TEXT,"
                " config TEXT, status TEXT, archive TEXT);"
                "CREATE TABLE IF NOT EXISTS rows (run INTEGER, data TEXT);"
                "CREATE TABLE IF NOT EXISTS shape_rows (run INTEGER, data TEXT);"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def add_run(self, result: EvaluationResult, config: dict, archive: str | None = None, status: str = "done") -> int:
        """Store a run; returns its id (``status`` "partial" while more of it is computing)."""
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO runs (created, dataset, config, status, archive) VALUES (?, ?, ?, ?, ?)",
                (time.time(), result.dataset, json.dumps(config), status, archive),
            )
            run = int(cur.lastrowid)
            self._insert_rows(db, run, result)
        return run

    def replace_run(self, run: int, result: EvaluationResult, config: dict, status: str = "done") -> None:
        """Replace a stored run's rows, configuration and status in one transaction (readers see
        the old run or the new one, never a mix)."""
        with self._connect() as db:
            db.execute("UPDATE runs SET config = ?, status = ? WHERE id = ?", (json.dumps(config), status, run))
            db.execute("DELETE FROM rows WHERE run = ?", (run,))
            db.execute("DELETE FROM shape_rows WHERE run = ?", (run,))
            self._insert_rows(db, run, result)

    def delete_run(self, run: int) -> None:
        """Remove a run and its rows."""
        with self._connect() as db:
            for table, column in (("runs", "id"), ("rows", "run"), ("shape_rows", "run")):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (run,))

    @staticmethod
    def _insert_rows(db: sqlite3.Connection, run: int, result: EvaluationResult) -> None:
        db.executemany(
            "INSERT INTO rows VALUES (?, ?)",
            [(run, json.dumps(r)) for r in json.loads(result.summary.to_json(orient="records"))],
        )
        db.executemany(
            "INSERT INTO shape_rows VALUES (?, ?)",
            [(run, json.dumps(r)) for r in json.loads(result.per_shape.to_json(orient="records"))],
        )

    def list_runs(self, dataset: str | None = None) -> pd.DataFrame:
        """Runs, newest first (optionally of one data set)."""
        query = "SELECT id, created, dataset, config, status, archive FROM runs"
        args: tuple = ()
        if dataset is not None:
            query += " WHERE dataset = ?"
            args = (dataset,)
        with self._connect() as db:
            df = pd.read_sql_query(query + " ORDER BY id DESC", db, params=args)
        df["created"] = pd.to_datetime(df["created"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
        return df

    def load_run(self, run: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Summary and per-shape rows of a run (with any extra columns stored with them)."""
        with self._connect() as db:
            rows = [json.loads(r[0]) for r in db.execute("SELECT data FROM rows WHERE run = ?", (run,))]
            shapes = [json.loads(r[0]) for r in db.execute("SELECT data FROM shape_rows WHERE run = ?", (run,))]
        if not rows:
            raise NecgsError(f"no run {run} in {self.path}")
        summary = pd.DataFrame(rows)  # the standard columns first, then any a caller added
        summary = summary.reindex(columns=[*SUMMARY_COLUMNS, *(c for c in summary if c not in SUMMARY_COLUMNS)])
        return summary, pd.DataFrame(shapes)
