"""The page's event handlers: plain functions from component values to component updates.

Each returns a list in the order of an output group defined in :mod:`necgs.webapp.layout`
(``RESULT_OUTPUTS``, ``VIEWER_OUTPUTS``...). Every failure a user can cause becomes a
visible message in the status box naming the file or id and the reason (never a server
path, never a red "Error" badge), and a failed job clears the results it would have
replaced, so nothing stale looks current.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr
import pandas as pd

from necgs.errors import NecgsError
from necgs.evaluation import Cancelled, ResultsStore
from necgs.settings import read_setting
from necgs.webapp import jobs, sessions, teaching, views


def _session(request: gr.Request | None) -> str:
    session = (request.session_hash if request is not None else None) or "default"
    sessions.touch(session)
    return session


# ---------------------------------------------------------------------------- status box
def info_html(text: str) -> str:
    """A neutral status line."""
    return f"<div style='padding:6px 0'>{html.escape(text)}</div>"


def problem_html(title: str, details: list[str] | None = None) -> str:
    """A visible problem message: what failed, then one line per file or reason."""
    items = "".join(f"<li>{html.escape(d)}</li>" for d in details or [])
    return (
        "<div role='alert' class='necgs-problem' style='border:2px solid #c62828;background:#fdecea;"
        f"color:#7f1d1d;padding:8px 12px;border-radius:6px'><b>{html.escape(title)}</b>"
        + (f"<ul style='margin:4px 0 0 16px'>{items}</ul>" if items else "")
        + "</div>"
    )


def progress_html(fraction: float, text: str) -> str:
    """The progress display's own bar (used for the background first-launch run)."""
    pct = max(0.0, min(1.0, fraction)) * 100
    return (
        f"<div id='bg-progress' style='font-size:13px'>{html.escape(text)} ({pct:.0f}%)"
        f"<div style='height:8px;background:#e5e7eb;border-radius:4px'><div style='height:8px;width:{pct:.1f}%;"
        "background:#2563eb;border-radius:4px'></div></div></div>"
    )


# ---------------------------------------------------------------------------- results
def _dropdown(choices: list, value: Any = None) -> dict:
    value = value if value in choices else (choices[0] if choices else None)
    return gr.update(choices=choices, value=value)


def show_view(view: views.RunView, status: str, overlays: list[int] | None) -> list:
    """RESULT_OUTPUTS for a run view: state, plots, tables, pickers, overlay and runs lists, status."""
    necgs_key = view.necgs_keys[0] if view.necgs_keys else None
    peer = views.matched_peer(view.summary, necgs_key)
    per_shape = view.per_shape.round(5) if len(view.per_shape) else pd.DataFrame()
    return [
        view.run,
        view.figures[0],
        view.figures[1],
        view.table,
        per_shape,
        _dropdown(view.shapes),
        _dropdown(view.necgs_keys, necgs_key),
        _dropdown(view.peer_keys, peer),
        gr.update(choices=views.run_choices(), value=[o for o in overlays or [] if o != view.run]),
        views.runs_table(),
        status,
    ]


def cleared(status: str) -> list:
    """RESULT_OUTPUTS after a failed job: nothing of an earlier run stays on screen."""
    empty = pd.DataFrame(columns=["codec", "setting"])
    return [
        None,
        None,
        None,
        empty,
        pd.DataFrame(columns=["shape"]),
        _dropdown([]),
        _dropdown([]),
        _dropdown([]),
        gr.update(choices=views.run_choices()),
        views.runs_table(),
        status,
    ]


def unchanged(status: str) -> list:
    """RESULT_OUTPUTS that only change the status."""
    return [gr.update() for _ in range(10)] + [status]


def on_load(request: gr.Request) -> list:
    """First paint: the newest run, or the shipped benchmark while the first-launch run computes."""
    _session(request)
    run = jobs.latest_run()
    if run is None:
        note = "Showing the benchmark shipped with the project (all 88 AMA bodies against the peers)." + (
            " The first-launch run on the built-in set is computing; see the progress above."
            if jobs.INITIAL_RUN.running
            else " Press Run to compute your own."
        )
        return show_view(views.shipped_view(), info_html(note), [])
    view = views.build_run_view(run)
    return show_view(view, info_html(f"Showing {view.label}."), [])


def on_shipped(overlays: list[int] | None, request: gr.Request) -> list:
    """Show the shipped benchmark."""
    _session(request)
    view = views.shipped_view(overlays)
    return show_view(view, info_html(f"Showing the {view.label}."), overlays)


def _job(request: gr.Request, progress: gr.Progress, work):
    """Run a job, showing each stage it stores (a prior variant first, then the whole run); turn
    its failures into a visible message that clears the results.

    Yields RESULT_OUTPUTS and the partial-run state: the run id when a first part is shown (its
    change fills the viewers while the rest computes), else unchanged.
    """
    session = _session(request)
    cancel = sessions.cancel_event(session)
    cancel.clear()
    try:
        for stage, notes in work(session, cancel, lambda frac, text: progress(frac, desc=text)):
            view = views.build_run_view(stage.run)
            if not stage.final:
                yield [*show_view(view, partial_status(stage) + failures_html(view.summary), []), stage.run]
                continue
            text = info_html(f"Run {stage.run} done: {view.label}.")
            text += "".join(info_html(f"note: {n}") for n in notes) + failures_html(view.summary)
            yield [*show_view(view, text, []), gr.update()]
    except Cancelled:
        yield [*cleared(problem_html("Cancelled: the results were cleared; press Run again.")), gr.update()]
    except jobs.UploadError as exc:
        yield [*cleared(problem_html(f"Your upload could not be used: {exc.title}.", exc.details)), gr.update()]
    except NecgsError as exc:
        yield [*cleared(problem_html("The run could not start:", [jobs.scrub_paths(exc)])), gr.update()]


def partial_status(stage: jobs.RunStage) -> str:
    """The status while a run's first part is shown: what is ready, in how long, and what follows."""
    ready = ", ".join(f"necgs {label}" for label in stage.ready)
    counts: dict[str, list[str]] = {}
    for codec, label in stage.pending:
        counts.setdefault(codec, []).append(label)
    rest = ", ".join(
        " | ".join(f"necgs {label}" for label in labels) if codec == "necgs" else f"{codec} ({len(labels)} settings)"
        for codec, labels in counts.items()
    )
    return info_html(
        f"Run {stage.run}: {ready} ready after {stage.seconds:.0f} s and shown below; still computing {rest} "
        "(the table marks them pending)."
    )


def failures_html(summary: pd.DataFrame) -> str:
    """A problem box naming each setting that failed in a run (the others are shown), or nothing."""
    failed = summary[summary.status == "error"] if "status" in summary else summary.iloc[:0]
    if not len(failed):
        return ""
    lines = [f"{r.codec} {r.label}: {jobs.scrub_paths(r.error)}" for r in failed.itertuples()]
    return problem_html("Some settings failed; the others are shown:", lines)


def _source(session: str, dataset: str, files: list[str] | None):
    """The data set to run on: the upload when files were given, else the named set."""
    if files or dataset == jobs.UPLOAD_LABEL:
        return jobs.load_upload(files, sessions.session_dir(session))
    return dataset, []


def on_run(
    dataset: str,
    files: list[str] | None,
    limit: float,
    width: str,
    preset: str,
    epochs: float,
    ssim: bool,
    deform: bool,
    autoencoder: bool,
    peers: list[str],
    decoder: str | None,
    request: gr.Request,
    progress=gr.Progress(),  # noqa: B008 (Gradio finds the progress tracker by this default)
):
    """Run NeCGS (a decoder trained with the chosen switches, a prior, or both) beside the chosen peers."""
    setting = jobs.necgs_settings(width, preset, ssim, deform, autoencoder, int(epochs or 0) or None)
    yield from _job(request, progress, _run_work(dataset, files, limit, peers, decoder, [setting], None))


def on_ablation(
    dataset: str,
    files: list[str] | None,
    limit: float,
    width: str,
    preset: str,
    epochs: float,
    ssim: bool,
    deform: bool,
    autoencoder: bool,
    peers: list[str],
    decoder: str | None,
    factor: str,
    values: list[str],
    request: gr.Request,
    progress=gr.Progress(),  # noqa: B008 (Gradio finds the progress tracker by this default)
):
    """Run every chosen variant of one factor on the same shapes in one job (and a chosen prior beside them)."""
    base = jobs.necgs_settings(width, preset, ssim, deform, autoencoder, int(epochs or 0) or None)
    yield from _job(request, progress, _run_work(dataset, files, limit, peers, decoder, None, (factor, values, base)))


def _run_work(dataset, files, limit, peers, decoder, settings: list[dict] | None, ablation: tuple | None):
    """The job body shared by a run and an ablation: NeCGS settings (or one factor's variants) and
    the chosen prior beside the peers; yields (stage, notes) per stored stage (:func:`jobs.run_stages`)."""

    def work(session, cancel, report):
        if ablation is None:
            variants = jobs.decoder_variants(decoder, settings)
        else:  # the factor's variants train; a chosen prior runs beside them
            variants = jobs.decoder_variants(decoder, jobs.ablation_variants(*ablation), always_train=True)
        source, notes = _source(session, dataset, files)
        for stage in jobs.run_stages(
            source,
            ["necgs", *(peers or [])],
            variants,
            int(limit),
            jobs.METRIC_SAMPLES,
            progress=report,
            cancel=cancel,
            config_extra=None if ablation is None else {"ablation": ablation[0]},
        ):
            yield stage, notes

    return work


def on_partial(run: int | None) -> None:
    """A job stored its first part (the event's chain fills the viewers from the pickers it set)."""


def on_cancel(request: gr.Request) -> str:
    """Ask the running job to stop after its current stage."""
    sessions.cancel_event(_session(request)).set()
    return info_html("Cancelling after the current stage...")


def on_load_run(run_id: float | None, overlays: list[int] | None, request: gr.Request) -> list:
    """Show a stored run (an unknown id only changes the status)."""
    _session(request)
    runs = ResultsStore().list_runs()
    ids = sorted(int(i) for i in runs.id)
    if run_id is None or int(run_id) not in ids:
        have = f"stored runs: {', '.join(map(str, ids[-12:]))}" if ids else "no run is stored yet: press Run"
        shown = "" if run_id is None else f" {int(run_id)}"
        return unchanged(problem_html(f"There is no run{shown}; the page still shows what it showed.", [have]))
    view = views.build_run_view(int(run_id), overlays)
    return show_view(view, info_html(f"Showing {view.label}."), overlays)


def on_restore(run: int | None) -> list:
    """CONTROL_OUTPUTS set to a loaded run's settings (data set, shapes, NeCGS switches, peers, decoder,
    ablation). A run with a prior only leaves the training switches as they are; a prior that is no
    longer installed is named in the decoder control's note (the choice stays one that exists)."""
    keep = [gr.update() for _ in range(13)]
    if not _stored(run):
        return keep
    config = jobs.run_config(int(run))
    settings = config.get("necgs") or [{}]
    trained = [s for s in settings if not jobs.is_prior(s)]
    base = trained[0] if trained else None
    factor = config.get("ablation", "")
    chosen = []
    if factor in jobs.ABLATIONS:
        for name, overrides in jobs.ABLATIONS[factor].items():
            if any(all(s.get(k) == v for k, v in overrides.items()) for s in trained):
                chosen.append(name)
    dataset = config.get("dataset")
    tree = read_setting(base) if base is not None else None
    switches = (
        [
            gr.update(value=str(tree.config.width)),
            gr.update(value=tree.preset),
            gr.update(value=tree.config.train.epochs),
            gr.update(value=tree.config.train.use_ssim),
            gr.update(value=tree.config.deform),
            gr.update(value=tree.config.autoencoder),
        ]
        if tree is not None
        else [gr.update() for _ in range(6)]  # a prior only: the training switches stay as they are
    )
    return [
        gr.update(value=dataset) if dataset in _dataset_names() else gr.update(),
        gr.update(value=config.get("shapes") or config.get("limit")),
        *switches,
        gr.update(value=[c for c in config.get("codecs", []) if c != "necgs"]),
        restored_decoder(run, settings),
        gr.update(value=factor) if factor in jobs.ABLATIONS else gr.update(),
        gr.update(choices=list(jobs.ABLATIONS[factor]), value=chosen) if factor in jobs.ABLATIONS else gr.update(),
        gr.update(selected="ablation" if factor else "one run"),
    ]


def restored_decoder(run: int, settings: list[dict]) -> dict:
    """The decoder control set to a run's choice, or a note when its prior is not installed here."""
    priors = jobs.installed_priors()
    choices = jobs.decoder_choices(priors)
    choice = jobs.decoder_choice(settings)
    if choice in choices:
        return gr.update(choices=choices, value=choice, info=jobs.decoder_note(priors))
    missing = jobs.parse_decoder(choice)[1]
    return gr.update(
        choices=choices,
        info=f"Run {run} used prior {missing!r}, which is not installed here; its results stay viewable. "
        + jobs.decoder_note(priors),
    )


def on_decoder_choices(value: str | None) -> dict:
    """The decoder control with the priors installed now (read on every page load)."""
    priors = jobs.installed_priors()
    choices = jobs.decoder_choices(priors)
    return gr.update(
        choices=choices, value=value if value in choices else jobs.TRAIN_DECODER, info=jobs.decoder_note(priors)
    )


def _dataset_names() -> list[str]:
    from necgs.io.datasets import list_datasets

    return [d.name for d in list_datasets()]


def on_overlay(run: int | None, overlays: list[int] | None) -> list:
    """Redraw the RD figures with the chosen past runs overlaid."""
    if run is None:
        return [None, None]
    view = views.build_run_view(run, overlays) if _stored(run) else views.shipped_view(overlays)
    return [view.figures[0], view.figures[1]]


def on_tick(request: gr.Request) -> list:
    """Heartbeat (keeps the session's folder) and the first-launch run's progress."""
    _session(request)
    bg = jobs.INITIAL_RUN
    if bg.error:
        return [problem_html("The first-launch run failed:", [bg.error]), bg.run]
    if bg.running:
        return [progress_html(bg.fraction, f"first-launch run on '{jobs.DEFAULT_DATASET}': {bg.text}"), bg.run]
    return [gr.update(), bg.run]


def on_initial_ready(ready: int | None, shown: int | None, request: gr.Request) -> list:
    """Show the first-launch run when it is done, if the page still shows the shipped benchmark."""
    _session(request)
    if ready is None or _stored(shown):
        return unchanged(gr.update())
    view = views.build_run_view(int(ready))
    return show_view(view, info_html(f"The first-launch run is ready: showing {view.label}."), [])


def on_factor(factor: str) -> dict:
    """The variants of an ablation factor: the first two picked, or every point of a rate curve."""
    names = list(jobs.ABLATIONS.get(factor, {}))
    return gr.update(choices=names, value=names if factor == jobs.RATE_CURVE else names[:2])


def on_upload(files: list[str] | None) -> dict:
    """An upload switches the data set to it (and clearing it switches back)."""
    return gr.update(value=jobs.UPLOAD_LABEL if files else jobs.DEFAULT_DATASET)


# ---------------------------------------------------------------------------- viewers
def _stored(run: int | None) -> bool:
    """Whether ``run`` is a stored run (not nothing, not the shipped benchmark)."""
    return run is not None and run != views.SHIPPED_RUN


def _summary(run: int | None) -> pd.DataFrame:
    if run is None:
        return pd.DataFrame(columns=["codec", "label"])
    if run == views.SHIPPED_RUN:
        return views.shipped_view().summary
    return views.with_series(ResultsStore().load_run(run)[0], False)


def _variant_keys(run: int | None) -> list[str]:
    """The NeCGS variants of an ablation run (none for a single-setting run)."""
    keys = [k for k in views.run_index(run)["decoded"] if k.startswith("necgs::")] if _stored(run) else []
    return keys[: views.MAX_VARIANT_VIEWERS] if len(keys) > 1 else []


def on_view(
    run: int | None, shape: str | None, necgs_key: str | None, other_key: str | None, request: gr.Request
) -> list:
    """VIEWER_OUTPUTS: original, NeCGS and baseline (titled, one colour scale), the legend, the
    scale, and which variant viewers an ablation needs (shown first, filled by :func:`on_variants`:
    a Model3D made visible and given a file in one update never draws)."""
    session = _session(request)
    summary = _summary(run)
    files = views.viewer_files(run, shape, [necgs_key, other_key], session)
    n_variants = len(_variant_keys(run))
    out = [
        gr.update(value=files.original, label=f"original: {shape}" if shape else "original"),
        _viewer(files.coloured[0], summary, necgs_key, "NeCGS"),
        _viewer(files.coloured[1], summary, other_key, "baseline"),
        files.legend,
        files.vmax,
    ]
    return out + [gr.update(visible=k < n_variants) for k in range(views.MAX_VARIANT_VIEWERS)]


def on_variants(run: int | None, shape: str | None, vmax: float | None, request: gr.Request) -> list:
    """The same shape under each NeCGS variant of an ablation, on the viewers' colour scale."""
    keys = _variant_keys(run)
    if not keys or not shape:
        return [gr.update(value=None) for _ in range(views.MAX_VARIANT_VIEWERS)]
    summary = _summary(run)
    files = views.viewer_files(run, shape, keys, _session(request), vmax=vmax)
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


def on_pick_run(evt: gr.SelectData) -> dict:
    """A click on a row of the runs table puts its id in the "run id" box."""
    row = evt.row_value or []
    return gr.update(value=int(row[0])) if row and str(row[0]).isdigit() else gr.update()


def pick_key(key: str | None) -> list:
    """[NeCGS picker, baseline picker] updates selecting ``codec::label``."""
    if not key or "::" not in key or key.startswith("floor::"):
        return [gr.update(), gr.update()]
    if key.startswith("necgs::"):
        return [gr.update(value=key), gr.update()]
    return [gr.update(), gr.update(value=key)]


def on_necgs_choice(run: int | None, necgs_key: str | None) -> dict:
    """Choosing a NeCGS variant moves the baseline to the peer nearest in bytes."""
    if not _stored(run) or not necgs_key:
        return gr.update()
    peer = views.matched_peer(_summary(run), necgs_key)
    return gr.update(value=peer) if peer else gr.update()


def on_downloads(run: int | None, necgs_key: str | None, request: gr.Request) -> list:
    """DOWNLOAD_OUTPUTS: archive, decoded meshes (zip) and the metrics (CSV)."""
    session = _session(request)
    return list(views.downloads(run, necgs_key, _summary(run), session))


def on_pngs(run: int | None, overlays: list[int] | None, request: gr.Request) -> list:
    """The RD figures as PNG files (and a status line if the renderer is missing)."""
    session = _session(request)
    if run is None:
        return [None, problem_html("Nothing to export: run something or load a run first.")]
    view = views.build_run_view(run, overlays) if _stored(run) else views.shipped_view(overlays)
    try:
        return [views.figure_pngs(view, session), gr.update()]
    except NecgsError as exc:
        return [None, problem_html("The figures could not be exported:", [jobs.scrub_paths(exc)])]


def on_figure(
    run: int | None, shape: str | None, necgs_key: str | None, vmax: float | None, request: gr.Request
) -> str | None:
    """The polyscope reviewer figure (same colours and scale as the viewers)."""
    return views.reviewer_figure(run, shape, necgs_key, _session(request), vmax)


# ---------------------------------------------------------------------------- teaching
def on_teach(
    run: int | None, shape: str | None, necgs_key: str | None, k: float, vmax: float | None, request: gr.Request
) -> list:
    """TEACH_OUTPUTS: slice figure, slider range, the fitted volume's mesh and the CD breakdown."""
    session = _session(request)
    if not _stored(run) or not shape or not necgs_key:
        return [None, gr.update(), gr.update(value=None), "Run NeCGS (or load a run) to look inside it."]
    per_shape = ResultsStore().load_run(run)[1]
    try:
        fitted, decoded = teaching.teaching_volumes(run, necgs_key, shape)
    except NecgsError as exc:
        return [None, gr.update(), gr.update(value=None), jobs.scrub_paths(exc)]  # e.g. its prior is gone
    K = fitted.shape[-1]
    k = int(k) if k is not None and 0 <= int(k) < K else K // 2
    fitted_glb = _fitted_glb(run, shape, necgs_key, session, vmax)
    return [
        teaching.slice_figure(fitted, decoded, k, f"{shape}, necgs {necgs_key.partition('::')[2]}: slice z = {k}"),
        gr.update(maximum=K - 1, value=k),
        gr.update(value=fitted_glb, label="mesh of the fitted volume (before compression), same colours"),
        teaching.cd_breakdown(per_shape, necgs_key, shape),
    ]


def _fitted_glb(run: int, shape: str, necgs_key: str, session: str, vmax: float | None) -> str | None:
    from necgs.visualize import error_colored_glb

    original = views.load_run_mesh(run, "original", None, shape)
    fitted = views.load_run_mesh(run, "fitted", necgs_key, shape)
    if original is None or fitted is None or fitted.n_faces == 0:
        return None
    out = sessions.session_dir(session) / "view" / f"fitted_{jobs._slug(necgs_key)}_{run}_{jobs._slug(shape)}.glb"
    out.parent.mkdir(parents=True, exist_ok=True)
    return str(error_colored_glb(fitted, original, out, vmax)[0])


def on_slice(run: int | None, shape: str | None, necgs_key: str | None, k: float):
    """Redraw the slice figure at another slice."""
    if not _stored(run) or not shape or not necgs_key:
        return None
    try:
        fitted, decoded = teaching.teaching_volumes(run, necgs_key, shape)
    except NecgsError:
        return None
    return teaching.slice_figure(
        fitted, decoded, int(k), f"{shape}, necgs {necgs_key.partition('::')[2]}: slice z = {int(k)}"
    )


def on_unload(request: gr.Request) -> None:
    """The tab closed: remove its session folder."""
    sessions.end_session((request.session_hash if request is not None else None) or "default")
