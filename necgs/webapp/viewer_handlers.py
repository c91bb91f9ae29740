"""The viewers' handlers: the shape viewers, the setting pickers, downloads, the reviewer figure
and the teaching view (fitted vs decoded volume) of the run the page shows.

Each returns a list in the order of an output group wired in :mod:`necgs.webapp.layout`
(``VIEWER_OUTPUTS``, ``TEACH_OUTPUTS``...); the run handlers are :mod:`necgs.webapp.handlers`.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from necgs.errors import NecgsError
from necgs.evaluation.runs import RunStore, slug
from necgs.visualize import error_colored_glb
from necgs.webapp import sessions, teaching, views
from necgs.webapp.messages import info_html, scrub_paths
from necgs.webapp.sessions import request_session

#: What the viewers say while the page shows no stored run (the shipped benchmark, or nothing yet).
NO_MESHES = (
    "The viewers are empty: the shipped benchmark keeps its numbers, not its meshes. They fill when you run "
    "a job or load one of your runs."
)


def _summary(run: int | None) -> pd.DataFrame:
    if run is None:
        return pd.DataFrame(columns=["codec", "label"])
    if run == views.SHIPPED_RUN:
        return views.shipped_view().summary
    return views.with_series(RunStore().load(run)[0], False)


def _variant_keys(run: int | None) -> list[str]:
    """The NeCGS variants of an ablation run (none for a single-setting run)."""
    keys = [k for k in RunStore().index(run)["decoded"] if k.startswith("necgs::")] if views.is_stored(run) else []
    return keys[: views.MAX_VARIANT_VIEWERS] if len(keys) > 1 else []


def on_view(
    run: int | None, shape: str | None, necgs_key: str | None, other_key: str | None, request: gr.Request
) -> list:
    """VIEWER_OUTPUTS: original, NeCGS and baseline (titled, one colour scale), the legend, the
    scale, and which variant viewers an ablation needs (shown first, filled by :func:`on_variants`:
    a Model3D made visible and given a file in one update never draws)."""
    session = request_session(request)
    summary = _summary(run)
    files = views.viewer_files(run, shape, [necgs_key, other_key], session)
    n_variants = len(_variant_keys(run))
    out = [
        gr.update(value=files.original, label=f"original: {shape}" if shape else "original"),
        _viewer(files.coloured[0], summary, necgs_key, "NeCGS"),
        _viewer(files.coloured[1], summary, other_key, "baseline"),
        files.legend if views.is_stored(run) else info_html(NO_MESHES),
        files.vmax,
    ]
    return out + [gr.update(visible=k < n_variants) for k in range(views.MAX_VARIANT_VIEWERS)]


def on_variants(run: int | None, shape: str | None, vmax: float | None, request: gr.Request) -> list:
    """The same shape under each NeCGS variant of an ablation, on the viewers' colour scale."""
    keys = _variant_keys(run)
    if not keys or not shape:
        return [gr.update(value=None) for _ in range(views.MAX_VARIANT_VIEWERS)]
    summary = _summary(run)
    files = views.viewer_files(run, shape, keys, request_session(request), vmax=vmax)
    out = [_viewer(path, summary, key, f"variant {k + 1}") for k, (key, path) in enumerate(zip(keys, files.coloured))]
    return out + [gr.update(value=None) for _ in range(views.MAX_VARIANT_VIEWERS - len(keys))]


def _viewer(path: str | None, summary: pd.DataFrame, key: str | None, role: str, **extra) -> dict:
    """A viewer's update: its file and a title saying what it shows (or that nothing decoded)."""
    title = views.viewer_title(summary, key, role)
    return gr.update(
        value=path, label=title if path or not key else f"{title} (no surface decoded for this shape)", **extra
    )


def on_pick_row(necgs_key: str | None, other_key: str | None, evt: gr.SelectData) -> list:
    """A click on a table row selects that setting for its viewer."""
    row = evt.row_value or []
    if len(row) < 2 or row[0] == "floor" or any(str(cell) in ("pending", "error") for cell in row):
        return [gr.update(), gr.update()]  # nothing decoded to show (yet)
    return pick_key(f"{row[0]}::{row[1]}")


def pick_key(key: str | None) -> list:
    """[NeCGS picker, baseline picker] updates selecting ``codec::label``."""
    if not key or "::" not in key or key.startswith("floor::"):
        return [gr.update(), gr.update()]
    if key.startswith("necgs::"):
        return [gr.update(value=key), gr.update()]
    return [gr.update(), gr.update(value=key)]


def on_necgs_choice(run: int | None, necgs_key: str | None) -> dict:
    """Choosing a NeCGS variant moves the baseline to the peer nearest in bytes."""
    if not views.is_stored(run) or not necgs_key:
        return gr.update()
    peer = views.matched_peer(_summary(run), necgs_key)
    return gr.update(value=peer) if peer else gr.update()


def on_downloads(run: int | None, necgs_key: str | None, request: gr.Request) -> list:
    """DOWNLOAD_OUTPUTS: archive, decoded meshes (zip) and the metrics (CSV)."""
    session = request_session(request)
    return list(views.downloads(run, necgs_key, _summary(run), session))


def on_figure(
    run: int | None, shape: str | None, necgs_key: str | None, vmax: float | None, request: gr.Request
) -> str | None:
    """The polyscope reviewer figure (same colours and scale as the viewers)."""
    return views.reviewer_figure(run, shape, necgs_key, request_session(request), vmax)


def on_teach(
    run: int | None, shape: str | None, necgs_key: str | None, vmax: float | None, request: gr.Request
) -> list:
    """TEACH_OUTPUTS: slice figure (at the shape's widest slice), slider range and place, the fitted
    volume's mesh and the CD breakdown."""
    session = request_session(request)
    if not views.is_stored(run) or not shape or not necgs_key:
        return [None, gr.update(), gr.update(value=None), "Run NeCGS (or load a run) to look inside it."]
    per_shape = RunStore().load(run)[1]
    try:
        fitted, decoded = teaching.teaching_volumes(run, necgs_key, shape)
    except NecgsError as exc:
        return [None, gr.update(), gr.update(value=None), scrub_paths(exc)]  # e.g. its prior is gone
    K = fitted.shape[-1]
    k = teaching.best_slice(fitted)
    fitted_glb = _fitted_glb(run, shape, necgs_key, session, vmax)
    return [
        teaching.slice_figure(fitted, decoded, k, f"{shape}, necgs {necgs_key.partition('::')[2]}: slice z = {k}"),
        gr.update(maximum=K - 1, value=k),
        gr.update(value=fitted_glb, label="mesh of the fitted volume (before compression), same colours"),
        teaching.cd_breakdown(per_shape, necgs_key, shape),
    ]


def no_model() -> dict:
    """An empty viewer (so that the file set next is new to it and drawn)."""
    return gr.update(value=None)


def _fitted_glb(run: int, shape: str, necgs_key: str, session: str, vmax: float | None) -> str | None:
    original = views.load_run_mesh(run, "original", None, shape)
    fitted = views.load_run_mesh(run, "fitted", necgs_key, shape)
    if original is None or fitted is None or fitted.n_faces == 0:
        return None
    try:
        out = sessions.session_dir(session) / "view" / f"fitted_{slug(necgs_key)}_{run}_{slug(shape)}.glb"
        out.parent.mkdir(exist_ok=True)  # not parents: a closed session's folder is not made again
        return str(error_colored_glb(fitted, original, out, vmax)[0])
    except (FileNotFoundError, sessions.SessionClosed):
        if not sessions.closed(session):
            raise
        return None  # the tab closed while its file was written


def on_slice(run: int | None, shape: str | None, necgs_key: str | None, k: float):
    """Redraw the slice figure at another slice."""
    if not views.is_stored(run) or not shape or not necgs_key:
        return None
    try:
        fitted, decoded = teaching.teaching_volumes(run, necgs_key, shape)
    except NecgsError:
        return None
    return teaching.slice_figure(
        fitted, decoded, int(k), f"{shape}, necgs {necgs_key.partition('::')[2]}: slice z = {int(k)}"
    )
