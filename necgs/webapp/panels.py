"""The page's panels: each a dataclass of its components and a builder that lays them out.

The run controls (data, NeCGS, peers, one run or an ablation), the results (progress, status,
RD figures, metrics table), the viewers, the teaching view, and the files (per-shape metrics,
downloads, exports, past runs); :class:`Page` holds them with the states the events share.
Element ids and labels are what the browser test drives.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from necgs.baselines.base import get_codec
from necgs.config import PRESETS
from necgs.io.datasets import list_datasets
from necgs.settings import KNOB
from necgs.webapp.advice import PAGE_WIDTHS, advise, suggested_width
from necgs.webapp.choices import ABLATIONS, BASELINES, DEFAULT_DATASET, DEFAULT_SHAPES, PAGE_PRESETS
from necgs.webapp.decoders import decoder_choices, decoder_note, installed_priors
from necgs.webapp.glossary import ABOUT, GLOSSARY, HEADER
from necgs.webapp.live_panel import LivePanel, live_panel
from necgs.webapp.uploads import UPLOAD_LABEL
from necgs.webapp.views import MAX_VARIANT_VIEWERS


@dataclass
class RunControls:
    """The left column: what to run (data, the decoder with the advice for the set and the state of the
    last advice, the trained decoder's switches, peers), one run or an ablation, and cancel."""

    dataset: gr.Dropdown
    limit: gr.Slider
    upload: gr.File
    decoder: gr.Dropdown
    advice: gr.Markdown
    advised: gr.State
    width: gr.Dropdown
    preset: gr.Radio
    epochs: gr.Number
    ssim: gr.Checkbox
    deform: gr.Checkbox
    autoencoder: gr.Checkbox
    peers: gr.CheckboxGroup
    mode: gr.Tabs
    factor: gr.Dropdown
    values: gr.CheckboxGroup
    run_btn: gr.Button
    ablation_btn: gr.Button
    cancel_btn: gr.Button

    @property
    def run_inputs(self) -> list:
        """The inputs of a run, in :func:`handlers.on_run`'s order."""
        return [
            self.dataset,
            self.upload,
            self.limit,
            self.width,
            self.preset,
            self.epochs,
            self.ssim,
            self.deform,
            self.autoencoder,
            self.peers,
            self.decoder,
        ]

    @property
    def restored(self) -> list:
        """CONTROL_OUTPUTS: the controls a loaded run sets, in :func:`handlers.on_restore`'s order."""
        return [
            self.dataset,
            self.limit,
            self.width,
            self.preset,
            self.epochs,
            self.ssim,
            self.deform,
            self.autoencoder,
            self.peers,
            self.decoder,
            self.factor,
            self.values,
            self.mode,
        ]


@dataclass
class ResultsPanel:
    """The right column: progress, status, the RD figures with their overlays, and the metrics table."""

    progress: gr.HTML
    status: gr.HTML
    plot_cd: gr.Plot
    plot_f1: gr.Plot
    overlay: gr.Dropdown
    shipped_btn: gr.Button
    table: gr.Dataframe
    picked: gr.Textbox
    live: LivePanel


@dataclass
class ViewerPanel:
    """The pickers and the 3D viewers (original, NeCGS, baseline, and each ablation variant)."""

    shape: gr.Dropdown
    necgs_variant: gr.Dropdown
    other_variant: gr.Dropdown
    original: gr.Model3D
    necgs: gr.Model3D
    other: gr.Model3D
    legend: gr.HTML
    variants: list[gr.Model3D]


@dataclass
class TeachingPanel:
    """Inside NeCGS: the fitted volume beside the decoded one."""

    accordion: gr.Accordion
    breakdown: gr.Markdown
    slice_k: gr.Slider
    slices: gr.Plot
    fitted_mesh: gr.Model3D

    @property
    def outputs(self) -> list:
        """TEACH_OUTPUTS, in :func:`viewer_handlers.on_teach`'s order."""
        return [self.slices, self.slice_k, self.fitted_mesh, self.breakdown]


@dataclass
class FilesPanel:
    """Per-shape metrics, downloads, PNG export, the reviewer figure and the past runs."""

    per_shape: gr.Dataframe
    archive: gr.File
    decoded_zip: gr.File
    csv: gr.File
    png_btn: gr.Button
    pngs: gr.File
    figure_btn: gr.Button
    figure: gr.Image
    runs: gr.Dataframe
    run_id: gr.Number
    load_btn: gr.Button

    @property
    def downloads(self) -> list:
        """DOWNLOAD_OUTPUTS, in :func:`viewer_handlers.on_downloads`' order."""
        return [self.archive, self.decoded_zip, self.csv]


@dataclass
class Page:
    """Every panel of the page and the states the events share.

    Attributes:
        run: The run shown (a run id, :data:`necgs.webapp.views.SHIPPED_RUN` or None).
        vmax: The viewers' shared colour scale.
        initial_ready: The first-launch run's id once it is done.
        partial_run: A job's first part is stored (a prior variant): its change fills the viewers.
    """

    run: gr.State
    vmax: gr.State
    initial_ready: gr.State
    partial_run: gr.State
    controls: RunControls
    results: ResultsPanel
    viewers: ViewerPanel
    teaching: TeachingPanel
    files: FilesPanel
    timer: gr.Timer

    @property
    def result_outputs(self) -> list:
        """RESULT_OUTPUTS, in :func:`handlers.show_view`'s order."""
        r = self.results
        v = self.viewers
        return [
            self.run,
            r.plot_cd,
            r.plot_f1,
            r.table,
            self.files.per_shape,
            v.shape,
            v.necgs_variant,
            v.other_variant,
            r.overlay,
            self.files.runs,
            r.status,
        ]

    @property
    def viewer_outputs(self) -> list:
        """VIEWER_OUTPUTS, in :func:`viewer_handlers.on_view`'s order."""
        v = self.viewers
        return [v.original, v.necgs, v.other, v.legend, self.vmax, *v.variants]

    @property
    def pick(self) -> list:
        """The run, shape and the two settings the viewers show."""
        return [self.run, self.viewers.shape, self.viewers.necgs_variant, self.viewers.other_variant]


#: Every 3D viewer: one height (set, so that a viewer inside a folded panel is not drawn flat when it
#: opens) on white; they turn together (:mod:`necgs.webapp.page_js`).
VIEWER = {"height": 320, "clear_color": [1, 1, 1, 1], "elem_classes": ["necgs-viewer"]}


# ---------------------------------------------------------------------------- builders
def run_controls() -> RunControls:
    """The left column: what to run and the buttons first (visible without scrolling), then the
    trained decoder's settings, the peers and the upload."""
    with gr.Column(scale=1, min_width=320):
        data = _data_controls()
        decoder = _decoder_control()
        mode = _mode_tabs()
        cancel_btn = gr.Button("Cancel", elem_id="cancel", size="sm")
        necgs = _necgs_controls()
        peers = _peer_controls()
        upload = _upload_control()
    return RunControls(**data, upload=upload, **decoder, **necgs, peers=peers, **mode, cancel_btn=cancel_btn)


def _data_controls() -> dict:
    """The data set and how many shapes."""
    return {
        "dataset": gr.Dropdown(_dataset_choices(), value=DEFAULT_DATASET, label="data set", elem_id="dataset"),
        "limit": gr.Slider(2, 64, value=DEFAULT_SHAPES, step=1, label="shapes (first N)", elem_id="limit"),
    }


def _upload_control() -> gr.File:
    """An upload that replaces the data set (folded: it is tall)."""
    with gr.Accordion("upload your own meshes", open=False, elem_id="upload_box"):
        return gr.File(
            label="meshes or a zip (used when given)",
            file_count="multiple",
            type="filepath",
            elem_id="upload",
        )


def _decoder_control() -> dict:
    """The decoder choice, started from the advice for the default set, and the line saying why."""
    priors = installed_priors()
    advice = advise(DEFAULT_SHAPES, DEFAULT_DATASET, priors)
    return {
        "decoder": gr.Dropdown(decoder_choices(priors), value=advice.choice, label="decoder", elem_id="decoder"),
        "advice": gr.Markdown(advice.reason, elem_id="advice"),
        "advised": gr.State((advice.choice, advice.width)),
    }


def _preset_caption(name: str) -> str:
    """``standard: K=64, 600 epochs, tied decoder``: what a preset's radio button chooses."""
    cfg = PRESETS[name]
    tied = ", tied decoder" if cfg.tied_modules else ""
    return f"{name}: K={cfg.fit.resolution}, {cfg.train.epochs} epochs{tied}"


def _necgs_controls() -> dict:
    """The switches of a trained decoder: its size (advised for the set), the preset and its epochs."""
    quick = PRESETS["quick"]
    presets = "; ".join(_preset_caption(p) for p in PAGE_PRESETS)
    with gr.Accordion("a trained decoder's settings", open=True, elem_id="training"):
        controls = {
            "width": gr.Dropdown(
                list(PAGE_WIDTHS),
                value=suggested_width(DEFAULT_SHAPES),
                label="decoder size",
                elem_id="width",
            ),
            "preset": gr.Radio(list(PAGE_PRESETS), value="quick", label=f"preset ({presets})", elem_id="preset"),
            "epochs": gr.Number(
                value=quick.train.epochs,
                precision=0,
                minimum=KNOB["epochs"].page[0],
                maximum=KNOB["epochs"].page[1],
                label=f"training epochs (the preset's; at most {KNOB['epochs'].page[1]} here: a job ends in minutes)",
                elem_id="epochs",
            ),
        }
        with gr.Row():
            controls["ssim"] = gr.Checkbox(True, label="SSIM term")
            controls["deform"] = gr.Checkbox(True, label="deformation")
            controls["autoencoder"] = gr.Checkbox(False, label="auto-encoder")
    return controls


def _peer_controls() -> gr.CheckboxGroup:
    """The baseline codecs available here, and (folded) a note naming those that are not."""
    available, unavailable_note = codec_availability()
    peers = gr.CheckboxGroup(
        available,
        value=[b for b in ("draco", "decimate-draco") if b in available],
        label="baseline codecs",
        elem_id="baselines",
    )
    if unavailable_note:
        with gr.Accordion("codecs not available here", open=False, elem_id="unavailable"):
            gr.Markdown(unavailable_note)
    return peers


def _mode_tabs() -> dict:
    """One run, or an ablation of one factor (its variants; the first is the reference)."""
    factors = list(ABLATIONS)
    with gr.Tabs() as mode:
        with gr.Tab("one run", id="one run"):
            run_btn = gr.Button("Run", variant="primary", elem_id="run")
        with gr.Tab("ablation", id="ablation", elem_id="ablation_tab"):
            factor = gr.Dropdown(factors, value=factors[0], label="factor", elem_id="factor")
            values = gr.CheckboxGroup(
                list(ABLATIONS[factors[0]]),
                value=list(ABLATIONS[factors[0]])[:2],
                label="variants (the first is the reference)",
                elem_id="variants",
            )
            ablation_btn = gr.Button("Run ablation", variant="primary", elem_id="run_ablation")
    return {"mode": mode, "factor": factor, "values": values, "run_btn": run_btn, "ablation_btn": ablation_btn}


def codec_availability() -> tuple[list[str], str]:
    """Available baselines, and a note for the unavailable ones."""
    ok, notes = [], []
    for name in BASELINES:
        available, why = get_codec(name).available()
        if available:
            ok.append(name)
        else:
            notes.append(f"- **{name}**: {why}")
    return ok, "\n".join(notes)


def _dataset_choices() -> list[str]:
    """Data set names for the dropdown."""
    return [d.name for d in list_datasets()] + [UPLOAD_LABEL]


def results_panel() -> ResultsPanel:
    """The right column: the job's progress and status on top, then the figures, the table and the glossary."""
    with gr.Column(scale=3):
        progress = gr.HTML("", elem_id="progress", min_height=40)
        status = gr.HTML("", elem_id="status")
        live = live_panel()
        with gr.Row():
            plot_cd = gr.Plot(label="CD vs ratio", elem_id="rd_cd")
            plot_f1 = gr.Plot(label="F1 vs ratio", elem_id="rd_f1")
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
            label="per codec and setting (click a row to view it; the CSV below has every column)",
            elem_id="summary",
            interactive=False,
            wrap=True,
        )
        picked = gr.Textbox(label="selected setting (click a point or a row)", elem_id="picked", max_lines=1)
        glossary_panel()
    return ResultsPanel(progress, status, plot_cd, plot_f1, overlay, shipped_btn, table, picked, live)


def glossary_panel() -> None:
    """What the numbers mean, open beside the table."""
    with gr.Accordion("what the numbers mean", open=True, elem_id="glossary"):
        gr.Markdown(GLOSSARY)


def about_panel() -> None:
    """The short header and, folded, what the page is about."""
    gr.Markdown(HEADER, elem_id="header")
    with gr.Accordion("about this page: NeCGS, the queue, whose runs you see", open=False, elem_id="about"):
        gr.Markdown(ABOUT)
        gr.Markdown(decoder_note(), elem_id="priors_note")


def viewer_panel() -> ViewerPanel:
    """The pickers and viewers, below."""
    # A picker's value may be one of the run shown a moment ago (a viewer refresh queued behind a
    # run's end while the visitor shows another run): Gradio would refuse it with a red "Error"
    # toast, so the pickers accept any value; the viewer handlers show nothing for a name the
    # shown run lacks.
    picker = {"allow_custom_value": True}
    with gr.Row():
        shape = gr.Dropdown([], label="shape", elem_id="shape", **picker)
        necgs_variant = gr.Dropdown([], label="NeCGS setting", elem_id="necgs_variant", **picker)
        other_variant = gr.Dropdown([], label="baseline (default: nearest in bytes)", elem_id="other_variant", **picker)
    with gr.Row():
        original = gr.Model3D(label="original", elem_id="view_original", **VIEWER)
        necgs = gr.Model3D(label="NeCGS", elem_id="view_necgs", **VIEWER)
        other = gr.Model3D(label="baseline", elem_id="view_other", **VIEWER)
    legend = gr.HTML("", elem_id="legend")
    with gr.Row():
        variants = [
            gr.Model3D(
                label=f"variant {k + 1}",
                visible=False,
                elem_id=f"view_variant_{k}",
                **VIEWER,
            )
            for k in range(MAX_VARIANT_VIEWERS)
        ]
    return ViewerPanel(shape, necgs_variant, other_variant, original, necgs, other, legend, variants)


def teaching_panel() -> TeachingPanel:
    """The teaching accordion."""
    with gr.Accordion("inside NeCGS: fitted volume vs decoded volume", open=False, elem_id="teaching") as accordion:
        breakdown = gr.Markdown("", elem_id="breakdown")
        slice_k = gr.Slider(0, 31, value=16, step=1, label="slice (z)", elem_id="slice")
        slices = gr.Plot(label="TSDF slices", elem_id="slices")
        fitted_mesh = gr.Model3D(
            label="mesh of the fitted volume (before compression)", elem_id="view_fitted", **VIEWER
        )
    return TeachingPanel(accordion, breakdown, slice_k, slices, fitted_mesh)


def files_panel() -> FilesPanel:
    """Per-shape metrics, downloads, exports, the reviewer figure and the past runs."""
    with gr.Accordion("per-shape metrics", open=False):
        per_shape = gr.Dataframe(interactive=False, elem_id="per_shape")
    with gr.Row():
        archive = gr.File(label="NeCGS archive (.ncgs)", elem_id="dl_archive")
        decoded_zip = gr.File(label="decoded NeCGS meshes (zip)", elem_id="dl_zip")
        csv = gr.File(label="metrics table (CSV)", elem_id="dl_csv")
    with gr.Row():
        png_btn = gr.Button("Export the RD figures as PNG", elem_id="png_btn")
        pngs = gr.File(label="RD figures (PNG)", file_count="multiple", elem_id="dl_png")
    with gr.Accordion("reviewer figure (polyscope, off-screen)", open=False):
        figure_btn = gr.Button("Render original vs NeCGS", elem_id="fig_btn")
        figure = gr.Image(label="reviewer figure", type="filepath", elem_id="fig_img")
    with gr.Accordion("past runs", open=False, elem_id="past_runs"):
        runs = gr.Dataframe(interactive=False, elem_id="runs")
        with gr.Row():
            run_id = gr.Number(label="run id", precision=0, elem_id="run_id")
            load_btn = gr.Button("Load run", elem_id="load_run")
    return FilesPanel(per_shape, archive, decoded_zip, csv, png_btn, pngs, figure_btn, figure, runs, run_id, load_btn)
