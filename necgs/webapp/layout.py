"""The page's layout and its wiring (building it does no work: no run; the only files read are
the installed priors' headers, for the decoder choices).

Top: a short header; the controls (the data set, the decoder with the advice for the set, Run
and Cancel first, so that a 1280x800 window shows them; one run, or an ablation of one factor;
a decoder trained on the set, an installed prior, or both) beside the single progress display,
the status, the RD figures (past runs can be overlaid), the metrics table and the glossary.
Below: the matched-rate viewers (original, NeCGS, the peer nearest in bytes), the same
shape under each ablation variant, the teaching view (fitted vs decoded volume), the
per-shape metrics, the downloads, the reviewer figure and the runs registry.

Each panel has its builder (:mod:`necgs.webapp.panels`), :func:`build_demo` lays them out,
and the ``_wire_*`` functions connect the events to :mod:`necgs.webapp.handlers` and
:mod:`necgs.webapp.viewer_handlers` (and :mod:`necgs.webapp.control_handlers`); the page's
script (:mod:`necgs.webapp.page_js`) runs on load.
"""

from __future__ import annotations

import gradio as gr

from necgs.webapp import control_handlers, handlers, page_js, viewer_handlers
from necgs.webapp.live_panel import wire_live
from necgs.webapp.panels import (
    Page,
    about_panel,
    files_panel,
    results_panel,
    run_controls,
    teaching_panel,
    viewer_panel,
)

#: Jobs running or waiting at once (beyond, Gradio's own queue holds them, showing "queue: n/m").
MAX_JOBS = 16

#: Clicking a point of an RD figure writes its ``codec::label`` into the #picked box.
PLOT_CLICK_JS = """
() => {
  const bind = () => document.querySelectorAll('#rd_cd .js-plotly-plot, #rd_f1 .js-plotly-plot').forEach(el => {
    if (el.__necgsBound || typeof el.on !== 'function') return;
    el.__necgsBound = true;
    el.on('plotly_click', d => {
      const key = d && d.points && d.points[0] && d.points[0].customdata;
      const box = document.querySelector('#picked textarea, #picked input');
      if (!key || !box) return;
      box.value = key;
      box.dispatchEvent(new Event('input', {bubbles: true}));
    });
  });
  setInterval(bind, 1000);
}
"""


# ---------------------------------------------------------------------------- the page
def build_demo() -> gr.Blocks:
    """Build the Blocks app."""
    with gr.Blocks(title="necgs: neural compression of mesh sets") as demo:
        states = [gr.State(None) for _ in range(4)]  # run, vmax, initial_ready, partial_run
        about_panel()
        with gr.Row():
            controls = run_controls()
            results = results_panel()
        viewers = viewer_panel()
        teaching = teaching_panel()
        files = files_panel()
        page = Page(*states, controls, results, viewers, teaching, files, gr.Timer(3.0))
        _wire(demo, page)
    return demo


# ---------------------------------------------------------------------------- wiring
def _wire(demo: gr.Blocks, page: Page) -> None:
    """Every event of the page (in this order, which fixes the API's endpoint names)."""
    _wire_first_paint(demo, page)
    _wire_jobs(page)
    _wire_past_runs(page)
    _wire_controls(page)
    _wire_viewers(page)
    _wire_background(demo, page)
    wire_live(page.results.live, page.results.progress)


def _after_view(page: Page, event, downloads: bool = True) -> None:
    """After ``event``: the variant viewers, the teaching view, then the downloads."""
    chained = event.then(
        viewer_handlers.on_variants,
        [page.run, page.viewers.shape, page.vmax],
        page.viewers.variants,
        show_progress="hidden",
    ).then(viewer_handlers.on_teach, _teach_inputs(page), page.teaching.outputs, show_progress="hidden")
    if downloads:
        chained.then(
            viewer_handlers.on_downloads,
            [page.run, page.viewers.necgs_variant],
            page.files.downloads,
            show_progress="hidden",
        )


def _teach_inputs(page: Page) -> list:
    """The teaching view's inputs: the run, shape and NeCGS setting shown, the colour scale."""
    return [page.run, page.viewers.shape, page.viewers.necgs_variant, page.vmax]


def _refresh(page: Page, event, downloads: bool = True) -> None:
    """Viewers, teaching view and downloads after ``event``."""
    _after_view(
        page, event.then(viewer_handlers.on_view, page.pick, page.viewer_outputs, show_progress="hidden"), downloads
    )


def _wire_first_paint(demo: gr.Blocks, page: Page) -> None:
    """The page load: the newest run (or the shipped benchmark), the installed priors, figure clicks."""
    _refresh(page, demo.load(handlers.on_load, None, page.result_outputs, show_progress="hidden"))
    demo.load(**_advice(page), show_progress="hidden", queue=False)
    demo.load(None, js=PLOT_CLICK_JS)
    demo.load(None, js=page_js.PAGE_JS)


def _wire_jobs(page: Page) -> None:
    """Run, ablation and cancel; a job yields its queue place while it waits, then twice when a
    prior variant is ready first, and its viewers fill while the rest computes."""
    c = page.controls
    # jobs run one at a time in webapp.jobs' queue; Gradio lets the waiting ones run their handler
    # too, so that each shows its place and notices a Cancel. Their progress shows in the progress
    # display, which the live panel's tick alone writes (no Gradio overlay: it blinked at every yield)
    job = {"show_progress": "hidden", "concurrency_limit": MAX_JOBS, "concurrency_id": "jobs"}
    outputs = [*page.result_outputs, page.partial_run]
    _refresh(page, c.run_btn.click(handlers.on_run, c.run_inputs, outputs, **job))
    _refresh(page, c.ablation_btn.click(handlers.on_ablation, [*c.run_inputs, c.factor, c.values], outputs, **job))
    _refresh(page, page.partial_run.change(handlers.on_partial, [page.partial_run], None, show_progress="hidden"))
    c.cancel_btn.click(handlers.on_cancel, None, page.results.status, queue=False)


def _wire_past_runs(page: Page) -> None:
    """Loading a past run (and restoring its controls), and the shipped benchmark."""
    loaded = page.files.load_btn.click(
        handlers.on_load_run, [page.files.run_id, page.results.overlay], page.result_outputs
    )
    _refresh(page, loaded)
    c = page.controls
    loaded.then(handlers.on_restore, [page.run], c.restored, show_progress="hidden").then(
        control_handlers.on_restored, [c.dataset, c.upload, c.limit], [c.advice, c.advised], show_progress="hidden"
    )
    _refresh(page, page.results.shipped_btn.click(handlers.on_shipped, [page.results.overlay], page.result_outputs))


def _advice(page: Page) -> dict:
    """The decoder advice's event arguments: the set the controls describe -> decoder, width, the line why."""
    c = page.controls
    return {
        "fn": control_handlers.on_advice,
        "inputs": [c.dataset, c.upload, c.limit, c.decoder, c.width, c.advised],
        "outputs": [c.decoder, c.width, c.advice, c.advised],
    }


def _wire_controls(page: Page) -> None:
    """Controls that update others: the overlays, the ablation factor, an upload, the decoder advice
    (a visitor's change of the data set or the number of shapes), the preset's epochs."""
    r, c = page.results, page.controls
    r.overlay.input(handlers.on_overlay, [page.run, r.overlay], [r.plot_cd, r.plot_f1])
    c.factor.input(handlers.on_factor, [c.factor], [c.values])
    c.upload.change(handlers.on_upload, [c.upload], [c.dataset], queue=False).then(
        **_advice(page), show_progress="hidden", queue=False
    )
    c.dataset.input(**_advice(page), show_progress="hidden", queue=False)
    c.limit.input(**_advice(page), show_progress="hidden", queue=False, trigger_mode="always_last")
    c.preset.input(control_handlers.on_preset, [c.preset], [c.epochs], queue=False)


def _wire_viewers(page: Page) -> None:
    """The pickers, a click on a table row, a figure point or a past run, the slice, the exports."""
    v, r, f, t = page.viewers, page.results, page.files, page.teaching
    _after_view(page, v.shape.input(viewer_handlers.on_view, page.pick, page.viewer_outputs), downloads=False)
    _refresh(
        page, v.necgs_variant.input(viewer_handlers.on_necgs_choice, [page.run, v.necgs_variant], [v.other_variant])
    )
    _after_view(page, v.other_variant.input(viewer_handlers.on_view, page.pick, page.viewer_outputs), downloads=False)
    pickers = [v.necgs_variant, v.other_variant]
    _refresh(page, r.table.select(viewer_handlers.on_pick_row, pickers, pickers))
    _refresh(page, r.picked.change(viewer_handlers.pick_key, [r.picked], pickers))
    f.runs.select(handlers.on_pick_run, None, [f.run_id])
    t.slice_k.release(
        viewer_handlers.on_slice, [page.run, v.shape, v.necgs_variant, t.slice_k], [t.slices], show_progress="hidden"
    )
    # a viewer inside the folded panel is drawn only when a new file comes after the panel opens
    t.accordion.expand(viewer_handlers.no_model, None, t.fitted_mesh, show_progress="hidden", queue=False).then(
        viewer_handlers.on_teach, _teach_inputs(page), t.outputs, show_progress="hidden"
    )
    f.png_btn.click(handlers.on_pngs, [page.run, r.overlay], [f.pngs, r.status])
    f.figure_btn.click(viewer_handlers.on_figure, [page.run, v.shape, v.necgs_variant, page.vmax], f.figure)


def _wire_background(demo: gr.Blocks, page: Page) -> None:
    """The heartbeat, showing the first-launch run when ready, and the tab closing."""
    page.timer.tick(handlers.on_tick, None, [page.initial_ready], show_progress="hidden", queue=False)
    ready = page.initial_ready.change(
        handlers.on_initial_ready, [page.initial_ready, page.run], page.result_outputs, show_progress="hidden"
    )
    _refresh(page, ready)
    demo.unload(handlers.on_unload)
