"""Inside NeCGS: the fitted TSDF-Def volume of a shape beside its decoded volume.

For the shape shown: a slice of the fitted volume (TSDF with the in-plane deformation as
arrows), the same slice decoded from the archive, and their difference; the mesh of the
fitted volume before compression; and the CD of each, so the error of the representation
and the error that compression adds can be told apart.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from necgs.compression import open_archive
from necgs.errors import NecgsError
from necgs.evaluation.runs import RunStore


@lru_cache(maxsize=8)
def teaching_volumes(run: int, necgs_key: str, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """Fitted and decoded TSDF-Def volumes (4, K, K, K) of one shape of a run's NeCGS variant.

    Raises:
        NecgsError: The run kept no fitted volume or archive for this variant and shape.
    """
    import torch  # torch and the codec load on first use, so the page starts fast

    store = RunStore()
    index = store.index(run)
    if necgs_key not in index["fitted"] or necgs_key not in index["archives"]:
        raise NecgsError(f"run {run} kept no fitted volumes for {necgs_key} (runs before this view did not)")
    path = store.volume_file(run, necgs_key, shape)
    if path is None:
        raise NecgsError(f"run {run} has no fitted volume of {shape}")
    fitted = np.load(path, allow_pickle=False)
    with open_archive(store.archive_file(run, necgs_key)) as arc:
        decoder = arc.decoder("cpu")
        with torch.no_grad():
            decoded = decoder(arc.feature(arc.index_of(shape))[None])[0].numpy()
    if not arc.deform:
        decoded = decoded.copy()
        decoded[1:] = 0.0
    return fitted, decoded


def slice_figure(fitted: np.ndarray, decoded: np.ndarray, k: int, title: str = "") -> go.Figure:
    """Three heatmaps of slice z = ``k``: fitted TSDF (+ deformation arrows), decoded TSDF, difference."""
    K = fitted.shape[-1]
    k = int(np.clip(k, 0, K - 1))
    a, b = fitted[0, :, :, k], decoded[0, :, :, k]
    names = ("fitted TSDF-Def (arrows: deformation)", "decoded from the archive", "decoded - fitted")
    fig = make_subplots(1, 3, subplot_titles=names, horizontal_spacing=0.08)
    tsdf = {"colorscale": "RdBu", "zmin": -1, "zmax": 1}
    fig.add_trace(go.Heatmap(z=a.T, colorbar={"x": 0.27, "len": 0.9, "title": "TSDF"}, **tsdf), 1, 1)
    fig.add_trace(go.Heatmap(z=b.T, showscale=False, **tsdf), 1, 2)
    diff = float(max(np.abs(b - a).max(), 1e-3))
    fig.add_trace(
        go.Heatmap(
            z=(b - a).T, colorscale="PuOr", zmin=-diff, zmax=diff, colorbar={"x": 1.0, "len": 0.9, "title": "diff"}
        ),
        1,
        3,
    )
    fig.add_trace(_deformation_arrows(fitted, k), 1, 1)
    for col in (1, 2, 3):
        fig.update_xaxes(title_text="x (node)", constrain="domain", row=1, col=col)
        fig.update_yaxes(title_text="y (node)", scaleanchor=f"x{'' if col == 1 else col}", row=1, col=col)
    fig.update_layout(
        title=title or f"slice z = {k} of {K}",
        height=420,
        showlegend=False,
        margin={"l": 40, "r": 10, "t": 80, "b": 40},
        template="plotly_white",
    )
    return fig


def best_slice(volume: np.ndarray) -> int:
    """The z slice with the widest cross-section of the shape (most nodes inside, TSDF < 0): where the
    slice figure shows the most of it."""
    inside = (volume[0] < 0).sum(axis=(0, 1))
    return int(np.argmax(inside)) if inside.any() else volume.shape[-1] // 2


def _deformation_arrows(volume: np.ndarray, k: int) -> go.Scatter:
    """In-plane deformation of the near-surface nodes of slice ``k`` as line segments (node units, x4)."""
    near = np.argwhere(np.abs(volume[0, :, :, k]) < 1.0)
    xs, ys = [], []
    for i, j in near:
        dx, dy = 0.5 * np.clip(volume[1:3, i, j, k], -1, 1) * 4
        xs += [i, i + dx, None]
        ys += [j, j + dy, None]
    return go.Scatter(x=xs, y=ys, mode="lines", line={"color": "black", "width": 1}, hoverinfo="skip")


def cd_breakdown(per_shape: pd.DataFrame, necgs_key: str | None, shape: str | None) -> str:
    """Markdown: CD of the fitted volume (representation) beside the decoded CD (representation + coding)."""
    if per_shape is None or not len(per_shape) or not necgs_key or not shape or "cd_fitted" not in per_shape:
        return "No breakdown for this run (runs stored before this view kept no fitted volumes)."
    label = necgs_key.partition("::")[2]
    row = per_shape[(per_shape.codec == "necgs") & (per_shape.label == label) & (per_shape["shape"] == shape)]
    if not len(row) or pd.isna(row.cd_fitted.iloc[0]):
        return f"No breakdown for {shape} under {label}."
    r = row.iloc[0]
    fitted, decoded = 1e3 * float(r.cd_fitted), 1e3 * float(r.cd)
    return (
        f"**{shape}, necgs {label}** (CD x1e-3; lower is better)\n\n"
        f"| stage | CD | F1 |\n|---|---|---|\n"
        f"| fitted volume, before compression (the representation) | {fitted:.2f} | {float(r.f1_fitted):.3f} |\n"
        f"| decoded from the archive | {decoded:.2f} | {float(r.f1_005):.3f} |\n"
        f"| added by compression | {decoded - fitted:+.2f} | {float(r.f1_005) - float(r.f1_fitted):+.3f} |\n"
    )
