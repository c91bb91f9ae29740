"""The page's layout and its wiring (building it does no work: no run; the only files read are
the installed priors' headers, for the decoder choices).

Top: the controls (one run, or an ablation of one factor; a decoder trained on the set, an
installed prior, or both) beside the single progress display, the status, the RD figures
(past runs can be overlaid) and the metrics table.
Below: the matched-rate viewers (original, NeCGS, the peer nearest in bytes), the same
shape under each ablation variant, the teaching view (fitted vs decoded volume), the
per-shape metrics, the downloads, the reviewer figure and the runs registry.
"""

from __future__ import annotations

from necgs.webapp import handlers, jobs
from necgs.webapp.views import MAX_VARIANT_VIEWERS

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

HEADER = (
    "# necgs: neural compression for sets of 3D meshes\n"
    "NeCGS (TSDF-Def volumes + a quantization-aware auto-decoder) beside the codecs people use, with the "
    "metric's sampling floor. Run one setting, or an ablation of one factor; click a row of the table or a "
    "point of a figure to look at that setting. Every run is reproducible with `necgs evaluate`."
)


def build_demo():
    """Build the Blocks app."""
    import gradio as gr

    available, unavailable_note = _codec_availability()
    with gr.Blocks(title="necgs: neural compression of mesh sets") as demo:
        run_state = gr.State(None)
        vmax_state = gr.State(None)
        initial_ready = gr.State(None)
        partial_run = gr.State(None)  # a job's first part (a prior variant) is stored: fill the viewers
        gr.Markdown(HEADER)
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                dataset = gr.Dropdown(
                    _dataset_choices(), value=jobs.DEFAULT_DATASET, label="data set", elem_id="dataset"
                )
                upload = gr.File(
                    label="or upload meshes / a zip (used when given)",
                    file_count="multiple",
                    type="filepath",
                    elem_id="upload",
                )
                limit = gr.Slider(2, 64, value=6, step=1, label="shapes (first N)", elem_id="limit")
                priors = jobs.installed_priors()
                decoder = gr.Dropdown(
                    jobs.decoder_choices(priors),
                    value=jobs.TRAIN_DECODER,
                    label="decoder (size, epochs and switches below apply to a trained one)",
                    info=jobs.decoder_note(priors),
                    elem_id="decoder",
                )
                width = gr.Dropdown(
                    ["tiny", "small", "medium", "large"], value="small", label="decoder size", elem_id="width"
                )
                preset = gr.Radio(
                    ["quick", "standard"],
                    value="quick",
                    label="preset (quick: K=64, 200 epochs; standard: K=64, 600 epochs)",
                )
                epochs = gr.Number(value=150, precision=0, label="training epochs", elem_id="epochs")
                with gr.Row():
                    ssim = gr.Checkbox(True, label="SSIM term")
                    deform = gr.Checkbox(True, label="deformation")
                    autoencoder = gr.Checkbox(False, label="auto-encoder")
                peers = gr.CheckboxGroup(
                    available,
                    value=[b for b in ("draco", "decimate-draco") if b in available],
                    label="baseline codecs",
                    elem_id="baselines",
                )
                gr.Markdown(unavailable_note)
                with gr.Tabs() as mode:
                    with gr.Tab("one run", id="one run"):
                        run_btn = gr.Button("Run", variant="primary", elem_id="run")
                    with gr.Tab("ablation", id="ablation", elem_id="ablation_tab"):
                        factors = list(jobs.ABLATIONS)
                        factor = gr.Dropdown(factors, value=factors[0], label="factor", elem_id="factor")
                        values = gr.CheckboxGroup(
                            list(jobs.ABLATIONS[factors[0]]),
                            value=list(jobs.ABLATIONS[factors[0]])[:2],
                            label="variants (the first is the reference)",
                            elem_id="variants",
                        )
                        ablation_btn = gr.Button("Run ablation", variant="primary", elem_id="run_ablation")
                cancel_btn = gr.Button("Cancel", elem_id="cancel")
            with gr.Column(scale=3):
                progress_box = gr.HTML("", elem_id="progress", min_height=40)
                status = gr.HTML("", elem_id="status")
                with gr.Row():
                    plot_cd = gr.Plot(label="CD vs ratio", elem_id="rd_cd")
                    plot_f1 = gr.Plot(label="F1@0.005 vs ratio", elem_id="rd_f1")
                with gr.Row():
                    overlay = gr.Dropdown(
                        [],
                        value=[],
                        multiselect=True,
                        label="overlay past runs (by id and settings)",
                        elem_id="overlay",
                        scale=4,
                    )
                    shipped_btn = gr.Button("show the shipped 88-AMA benchmark", scale=1, elem_id="shipped")
                table = gr.Dataframe(
                    label="per codec and setting (click a row to view it; CD split into the fitted "
                    "representation and what coding adds)",
                    elem_id="summary",
                    interactive=False,
                )
                picked = gr.Textbox(label="selected setting (click a point or a row)", elem_id="picked", max_lines=1)
        with gr.Row():
            shape = gr.Dropdown([], label="shape", elem_id="shape")
            necgs_variant = gr.Dropdown([], label="NeCGS setting", elem_id="necgs_variant")
            other_variant = gr.Dropdown([], label="baseline (default: nearest in bytes)", elem_id="other_variant")
        with gr.Row():
            view_orig = gr.Model3D(label="original", elem_id="view_original", clear_color=[1, 1, 1, 1])
            view_necgs = gr.Model3D(label="NeCGS", elem_id="view_necgs", clear_color=[1, 1, 1, 1])
            view_other = gr.Model3D(label="baseline", elem_id="view_other", clear_color=[1, 1, 1, 1])
        legend = gr.HTML("", elem_id="legend")
        with gr.Row():
            variant_views = [
                gr.Model3D(
                    label=f"variant {k + 1}",
                    visible=False,
                    elem_id=f"view_variant_{k}",
                    height=320,
                    clear_color=[1, 1, 1, 1],
                )
                for k in range(MAX_VARIANT_VIEWERS)
            ]
        with gr.Accordion("inside NeCGS: fitted volume vs decoded volume", open=False, elem_id="teaching"):
            teach_md = gr.Markdown("", elem_id="breakdown")
            slice_k = gr.Slider(0, 31, value=16, step=1, label="slice (z)", elem_id="slice")
            teach_plot = gr.Plot(label="TSDF slices", elem_id="slices")
            teach_mesh = gr.Model3D(
                label="mesh of the fitted volume (before compression)", elem_id="view_fitted", clear_color=[1, 1, 1, 1]
            )
        with gr.Accordion("per-shape metrics", open=False):
            per_shape = gr.Dataframe(interactive=False, elem_id="per_shape")
        with gr.Row():
            archive_file = gr.File(label="NeCGS archive (.ncgs)", elem_id="dl_archive")
            decoded_zip = gr.File(label="decoded NeCGS meshes (zip)", elem_id="dl_zip")
            csv_file = gr.File(label="metrics table (CSV)", elem_id="dl_csv")
        with gr.Row():
            png_btn = gr.Button("Export the RD figures as PNG", elem_id="png_btn")
            png_files = gr.File(label="RD figures (PNG)", file_count="multiple", elem_id="dl_png")
        with gr.Accordion("reviewer figure (polyscope, off-screen)", open=False):
            fig_btn = gr.Button("Render original vs NeCGS", elem_id="fig_btn")
            fig_img = gr.Image(label="reviewer figure", type="filepath", elem_id="fig_img")
        with gr.Accordion("past runs", open=False, elem_id="past_runs"):
            runs = gr.Dataframe(interactive=False, elem_id="runs")
            with gr.Row():
                run_id = gr.Number(label="run id", precision=0, elem_id="run_id")
                load_btn = gr.Button("Load run", elem_id="load_run")
        timer = gr.Timer(3.0)

        results = [
            run_state,
            plot_cd,
            plot_f1,
            table,
            per_shape,
            shape,
            necgs_variant,
            other_variant,
            overlay,
            runs,
            status,
        ]
        viewers = [view_orig, view_necgs, view_other, legend, vmax_state, *variant_views]
        pick = [run_state, shape, necgs_variant, other_variant]
        teach = [teach_plot, slice_k, teach_mesh, teach_md]
        job = {"show_progress_on": [progress_box], "concurrency_limit": 1, "concurrency_id": "jobs"}

        def after_view(event, downloads: bool = True):
            """The variant viewers, the teaching view, then the downloads, after the viewers."""
            chained = event.then(
                handlers.on_variants, [run_state, shape, vmax_state], variant_views, show_progress="hidden"
            ).then(
                handlers.on_teach, [run_state, shape, necgs_variant, slice_k, vmax_state], teach, show_progress="hidden"
            )
            if downloads:
                chained.then(
                    handlers.on_downloads,
                    [run_state, necgs_variant],
                    [archive_file, decoded_zip, csv_file],
                    show_progress="hidden",
                )

        def refresh(event, downloads: bool = True):
            """Viewers, teaching view and downloads after ``event``."""
            after_view(event.then(handlers.on_view, pick, viewers, show_progress="hidden"), downloads)

        controls = [dataset, upload, limit, width, preset, epochs, ssim, deform, autoencoder, peers, decoder]
        refresh(demo.load(handlers.on_load, None, results, show_progress="hidden"))
        demo.load(handlers.on_decoder_choices, [decoder], [decoder], show_progress="hidden", queue=False)
        demo.load(None, js=PLOT_CLICK_JS)
        # a job yields twice when a prior variant is ready first: its viewers fill while the rest computes
        refresh(run_btn.click(handlers.on_run, controls, [*results, partial_run], **job))
        refresh(ablation_btn.click(handlers.on_ablation, [*controls, factor, values], [*results, partial_run], **job))
        refresh(partial_run.change(handlers.on_partial, [partial_run], None, show_progress="hidden"))
        cancel_btn.click(handlers.on_cancel, None, status, queue=False)
        restore = [
            dataset,
            limit,
            width,
            preset,
            epochs,
            ssim,
            deform,
            autoencoder,
            peers,
            decoder,
            factor,
            values,
            mode,
        ]
        loaded = load_btn.click(handlers.on_load_run, [run_id, overlay], results)
        refresh(loaded)
        loaded.then(handlers.on_restore, [run_state], restore, show_progress="hidden")
        refresh(shipped_btn.click(handlers.on_shipped, [overlay], results))
        overlay.input(handlers.on_overlay, [run_state, overlay], [plot_cd, plot_f1])
        factor.input(handlers.on_factor, [factor], [values])
        upload.change(handlers.on_upload, [upload], [dataset], queue=False)
        after_view(shape.input(handlers.on_view, pick, viewers), downloads=False)
        refresh(necgs_variant.input(handlers.on_necgs_choice, [run_state, necgs_variant], [other_variant]))
        after_view(other_variant.input(handlers.on_view, pick, viewers), downloads=False)
        refresh(table.select(handlers.on_pick_row, [necgs_variant, other_variant], [necgs_variant, other_variant]))
        refresh(picked.change(handlers.pick_key, [picked], [necgs_variant, other_variant]))
        runs.select(handlers.on_pick_run, None, [run_id])
        slice_k.release(
            handlers.on_slice, [run_state, shape, necgs_variant, slice_k], [teach_plot], show_progress="hidden"
        )
        png_btn.click(handlers.on_pngs, [run_state, overlay], [png_files, status])
        fig_btn.click(handlers.on_figure, [run_state, shape, necgs_variant, vmax_state], fig_img)
        timer.tick(handlers.on_tick, None, [progress_box, initial_ready], show_progress="hidden", queue=False)
        refresh(
            initial_ready.change(handlers.on_initial_ready, [initial_ready, run_state], results, show_progress="hidden")
        )
        demo.unload(handlers.on_unload)
    return demo


def _codec_availability() -> tuple[list[str], str]:
    """Available baselines, and a note for the unavailable ones."""
    from necgs.baselines.base import get_codec

    ok, notes = [], []
    for name in jobs.BASELINES:
        available, why = get_codec(name).available()
        if available:
            ok.append(name)
        else:
            notes.append(f"- **{name}**: {why}")
    return ok, ("Not available here:\n" + "\n".join(notes)) if notes else ""


def _dataset_choices() -> list[str]:
    """Data set names for the dropdown."""
    from necgs.io.datasets import list_datasets

    return [d.name for d in list_datasets()] + [jobs.UPLOAD_LABEL]
