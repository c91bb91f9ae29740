"""The page's run handlers: plain functions from component values to component updates.

Page load, a run or an ablation (a job), cancelling, loading and restoring a past run, the
overlays and the figures' export, the first-launch run's heartbeat, and the controls that
update others. The viewers, downloads and teaching view: :mod:`necgs.webapp.viewer_handlers`.

Each returns a list in the order of an output group wired in :mod:`necgs.webapp.layout`
(``RESULT_OUTPUTS``, ``CONTROL_OUTPUTS``...). Every failure a user can cause becomes a visible
message in the status box (:mod:`necgs.webapp.messages`); an input error keeps what the page
showed, and a job that fails after showing a first part clears it, so nothing stale looks current.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from necgs.errors import Cancelled, NecgsError
from necgs.evaluation.runs import RunNotVisibleError, RunStore
from necgs.io.datasets import list_datasets
from necgs.io.loading import LoadedSet
from necgs.settings import read_setting
from necgs.webapp import decoders, live, sessions, tables, views
from necgs.webapp.choices import (
    ABLATIONS,
    DEFAULT_DATASET,
    RATE_CURVE,
    ablation_variants,
    necgs_settings,
    unavailable_notes,
)
from necgs.webapp.first_launch import INITIAL_RUN
from necgs.webapp.jobs import JOBS, JobAlreadyQueued, waiting_text
from necgs.webapp.messages import failures_html, info_html, problem_html, scrub_paths
from necgs.webapp.running import METRIC_SAMPLES, RunStage, run_stages
from necgs.webapp.sessions import request_session
from necgs.webapp.uploads import UPLOAD_LABEL, UploadError, load_upload

#: How often a waiting job looks at the queue (and so shows its place and notices a Cancel).
QUEUE_POLL_S = 1.0


def _dropdown(options: list, value: Any = None) -> dict:
    value = value if value in options else (options[0] if options else None)
    return gr.update(choices=options, value=value)


def show_view(view: views.RunView, status: str, overlays: list[int] | None, owners: list[str | None]) -> list:
    """RESULT_OUTPUTS for a run view: state, plots, tables, pickers, overlay and runs lists (the runs
    of ``owners``), status."""
    necgs_key = view.necgs_keys[0] if view.necgs_keys else None
    peer = views.matched_peer(view.summary, necgs_key)
    per_shape = tables.per_shape_table(view.per_shape)
    return [
        view.run,
        view.figures[0],
        view.figures[1],
        view.table,
        per_shape,
        _dropdown(view.shapes),
        _dropdown(view.necgs_keys, necgs_key),
        _dropdown(view.peer_keys, peer),
        gr.update(choices=views.run_choices(owners), value=[o for o in overlays or [] if o != view.run]),
        views.runs_table(owners),
        status,
    ]


def cleared(status: str, owners: list[str | None]) -> list:
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
        gr.update(choices=views.run_choices(owners)),
        views.runs_table(owners),
        status,
    ]


def unchanged(status: str) -> list:
    """RESULT_OUTPUTS that only change the status."""
    return [gr.update() for _ in range(10)] + [status]


def _owners(request: gr.Request) -> tuple[str, list[str | None]]:
    """The request's session (marked as active) and the owners of the runs it may see."""
    session = request_session(request)
    return session, sessions.visible_owners(session)


def on_load(request: gr.Request) -> list:
    """First paint: the session's newest run (the first-launch run, or one of its own), or the
    shipped benchmark while the first-launch run computes."""
    _, owners = _owners(request)
    run = RunStore().latest(owners=owners)
    if run is None:
        note = "Showing the benchmark shipped with the project (all 88 AMA bodies against the peers)." + (
            " The first-launch run on the built-in set is computing; see the progress above."
            if INITIAL_RUN.running
            else " Press Run to compute your own."
        )
        return show_view(views.shipped_view(), info_html(note), [], owners)
    view = views.build_run_view(run)
    return show_view(view, info_html(f"Showing {view.label}."), [], owners)


def on_shipped(overlays: list[int] | None, request: gr.Request) -> list:
    """Show the shipped benchmark."""
    _, owners = _owners(request)
    overlays = views.visible_runs(overlays, owners)
    view = views.shipped_view(overlays)
    return show_view(view, info_html(f"Showing the {view.label}."), overlays, owners)


def _job(request: gr.Request, work):
    """Queue a job (one per session), show its place while it waits, then run it, showing each
    stage it stores (a prior variant first, then the whole run); turn its failures into a
    visible message that clears the results. However it ends, it leaves the queue (the worker
    goes to the next job). Its progress goes to its ticket, which the page's progress display
    shows (:mod:`necgs.webapp.live_panel`).

    Yields RESULT_OUTPUTS and the partial-run state: the run id when a first part is shown (its
    change fills the viewers while the rest computes), else unchanged.
    """
    session, owners = _owners(request)
    try:
        ticket = JOBS.join(session)
    except JobAlreadyQueued as exc:
        yield [*unchanged(problem_html(f"This job was not queued: {exc}.")), gr.update()]
        return
    cancel = sessions.cancel_event(session)
    cancel.clear()
    shown = False  # whether a part of this job replaced what the page showed
    try:
        while not JOBS.wait_turn(ticket, QUEUE_POLL_S):
            if cancel.is_set():
                raise Cancelled("left the queue")
            yield [*unchanged(info_html(waiting_text(*JOBS.place(ticket)))), gr.update()]
        yield [*unchanged(info_html("Your job has the worker now: its progress shows above.")), gr.update()]
        for stage, notes in work(session, cancel, ticket.report):
            view = views.build_run_view(stage.run)
            if not stage.final:
                status = partial_status(stage) + failures_html(view.summary)
                shown = True
                yield [*show_view(view, status, [], owners), stage.run]
                continue
            text = info_html(f"Run {stage.run} done: {view.label}.")
            text += "".join(info_html(f"note: {n}") for n in notes) + failures_html(view.summary)
            yield [*show_view(view, text, [], owners), gr.update()]
    except Cancelled:
        yield [*cleared(problem_html("Cancelled: the results were cleared; press Run again."), owners), gr.update()]
    except UploadError as exc:
        status = problem_html(f"Your upload could not be used: {exc.title}.", exc.details)
        yield [*_after_error(status, shown, owners), gr.update()]
    except NecgsError as exc:
        status = problem_html("The run could not start:", [scrub_paths(exc)])
        yield [*_after_error(status, shown, owners), gr.update()]
    finally:
        JOBS.leave(ticket)


def _after_error(status: str, shown: bool, owners: list[str | None]) -> list:
    """RESULT_OUTPUTS after a job failed: what the page showed before stays (an input error changes
    nothing else), but a first part the job had shown is cleared (its run is gone)."""
    return cleared(status, owners) if shown else unchanged(status)


def _settings(controls: tuple) -> tuple[dict | None, list | None]:
    """(the NeCGS setting of the run controls, None), or (None, RESULT_OUTPUTS and the partial-run
    state naming the control that is out of bounds, with everything else unchanged)."""
    try:
        return necgs_settings(*controls), None
    except NecgsError as exc:
        return None, [*unchanged(problem_html("The run could not start:", [scrub_paths(exc)])), gr.update()]


def partial_status(stage: RunStage) -> str:
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


def _source(session: str, dataset: str | LoadedSet, files: list[str] | None):
    """The data set to run on: the upload when files were given, else the named set (or meshes
    loaded already: a benchmark's)."""
    if isinstance(dataset, LoadedSet):
        return dataset, []
    if files or dataset == UPLOAD_LABEL:
        return load_upload(files, sessions.session_dir(session))
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
):
    """Run NeCGS (a decoder trained with the chosen switches, a prior, or both) beside the chosen peers."""
    setting, problem = _settings((width, preset, ssim, deform, autoencoder, int(epochs or 0) or None))
    if problem is not None:
        yield problem
        return
    yield from _job(request, _run_work(dataset, files, limit, peers, decoder, [setting], None))


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
):
    """Run every chosen variant of one factor on the same shapes in one job (and a chosen prior beside them)."""
    base, problem = _settings((width, preset, ssim, deform, autoencoder, int(epochs or 0) or None))
    if problem is not None:
        yield problem
        return
    yield from _job(request, _run_work(dataset, files, limit, peers, decoder, None, (factor, values, base)))


def _run_work(dataset, files, limit, peers, decoder, settings: list[dict] | None, ablation: tuple | None):
    """The job body shared by a run and an ablation: NeCGS settings (or one factor's variants) and
    the chosen prior beside the peers; yields (stage, notes) per stored stage (:func:`running.run_stages`),
    showing its shapes and losses live in the session's feed (:mod:`necgs.webapp.live`)."""

    def work(session, cancel, report):
        if ablation is None:
            variants = decoders.decoder_variants(decoder, settings)
        else:  # the factor's variants train; a chosen prior runs beside them
            variants = decoders.decoder_variants(decoder, ablation_variants(*ablation), always_train=True)
        source, notes = _source(session, dataset, files)
        notes = [*notes, *unavailable_notes(peers)]
        feed = live.start_feed(session, sessions.session_dir(session), sessions.active_sessions())
        for stage in run_stages(
            source,
            ["necgs", *(peers or [])],
            variants,
            int(limit),
            METRIC_SAMPLES,
            progress=report,
            cancel=cancel,
            config_extra=None if ablation is None else {"ablation": ablation[0]},
            owner=session,
            live=feed,
        ):
            yield stage, notes

    return work


def on_partial(run: int | None) -> None:
    """A job stored its first part (the event's chain fills the viewers from the pickers it set)."""


def on_cancel(request: gr.Request) -> str:
    """Stop the session's job (running: within a second of work; waiting: it leaves the queue)."""
    session = request_session(request)
    if session not in JOBS.sessions():
        return info_html("No job of yours is running or waiting.")
    sessions.cancel_event(session).set()
    return info_html("Cancelling...")


def on_load_run(run_id: float | None, overlays: list[int] | None, request: gr.Request) -> list:
    """Show a stored run of this session's (an unknown id, or another session's, only changes the status)."""
    _, owners = _owners(request)
    store = RunStore()
    if run_id is not None and store.exists(int(run_id)):
        try:
            store.check_visible(int(run_id), owners)
        except RunNotVisibleError as exc:
            return unchanged(problem_html(f"Refused: {exc}."))
    ids = sorted(int(i) for i in store.runs(owners=owners).id)
    if run_id is None or int(run_id) not in ids:
        have = f"your runs: {', '.join(map(str, ids[-12:]))}" if ids else "no run is stored yet: press Run"
        shown = "" if run_id is None else f" {int(run_id)}"
        return unchanged(problem_html(f"There is no run{shown}; the page still shows what it showed.", [have]))
    overlays = views.visible_runs(overlays, owners)
    view = views.build_run_view(int(run_id), overlays)
    return show_view(view, info_html(f"Showing {view.label}."), overlays, owners)


def on_pick_run(evt: gr.SelectData) -> dict:
    """A click on a row of the runs table puts its id in the "run id" box."""
    row = evt.row_value or []
    return gr.update(value=int(row[0])) if row and str(row[0]).isdigit() else gr.update()


def on_restore(run: int | None) -> list:
    """CONTROL_OUTPUTS set to a loaded run's settings (data set, shapes, NeCGS switches, peers, decoder,
    ablation). A run with a prior only leaves the training switches as they are; a prior that is no
    longer installed is named in the decoder control's note (the choice stays one that exists)."""
    keep = [gr.update() for _ in range(13)]
    if not views.is_stored(run):
        return keep
    config = RunStore().config(int(run))
    settings = config.get("necgs") or [{}]
    trained = [s for s in settings if not decoders.is_prior(s)]
    base = trained[0] if trained else None
    factor = config.get("ablation", "")
    chosen = []
    if factor in ABLATIONS:
        for name, overrides in ABLATIONS[factor].items():
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
        gr.update(value=factor) if factor in ABLATIONS else gr.update(),
        gr.update(choices=list(ABLATIONS[factor]), value=chosen) if factor in ABLATIONS else gr.update(),
        gr.update(selected="ablation" if factor else "one run"),
    ]


def restored_decoder(run: int, settings: list[dict]) -> dict:
    """The decoder control set to a run's choice, or a note when its prior is not installed here."""
    priors = decoders.installed_priors()
    choices = decoders.decoder_choices(priors)
    choice = decoders.decoder_choice(settings)
    if choice in choices:
        return gr.update(choices=choices, value=choice)
    missing = decoders.parse_decoder(choice)[1]
    return gr.update(
        choices=choices,
        info=f"Run {run} used prior {missing!r}, which is not installed here; its results stay viewable. "
        + decoders.decoder_note(priors),
    )


def _dataset_names() -> list[str]:
    return [d.name for d in list_datasets()]


def on_overlay(run: int | None, overlays: list[int] | None, request: gr.Request) -> list:
    """Redraw the RD figures with the chosen past runs (of this session's) overlaid."""
    _, owners = _owners(request)
    if run is None:
        return [None, None]
    view = views.shown_view(run, views.visible_runs(overlays, owners))
    return [view.figures[0], view.figures[1]]


def on_pngs(run: int | None, overlays: list[int] | None, request: gr.Request) -> list:
    """The RD figures as PNG files (and a status line if the renderer is missing)."""
    session, owners = _owners(request)
    if run is None:
        return [None, problem_html("Nothing to export: run something or load a run first.")]
    view = views.shown_view(run, views.visible_runs(overlays, owners))
    try:
        return [views.figure_pngs(view, session), gr.update()]
    except NecgsError as exc:
        return [None, problem_html("The figures could not be exported:", [scrub_paths(exc)])]


def on_tick(request: gr.Request) -> int | None:
    """Heartbeat (keeps the session's folder) and the first-launch run's id once it is done (its
    progress shows in the progress display: :mod:`necgs.webapp.live_panel`)."""
    request_session(request)
    return INITIAL_RUN.run


def on_initial_ready(ready: int | None, shown: int | None, request: gr.Request) -> list:
    """Show the first-launch run when it is done, if the page still shows the shipped benchmark."""
    _, owners = _owners(request)
    if ready is None or views.is_stored(shown):
        return unchanged(gr.update())
    view = views.build_run_view(int(ready))
    return show_view(view, info_html(f"The first-launch run is ready: showing {view.label}."), [], owners)


def on_factor(factor: str) -> dict:
    """The variants of an ablation factor: the first two picked, or every point of a rate curve."""
    names = list(ABLATIONS.get(factor, {}))
    return gr.update(choices=names, value=names if factor == RATE_CURVE else names[:2])


def on_upload(files: list[str] | None) -> dict:
    """An upload switches the data set to it (and clearing it switches back)."""
    return gr.update(value=UPLOAD_LABEL if files else DEFAULT_DATASET)


def on_unload(request: gr.Request) -> None:
    """The tab closed: cancel its job (running or waiting) and remove its session folder."""
    sessions.end_session((request.session_hash if request is not None else None) or "default")
