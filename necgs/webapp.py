"""The Gradio page: layout and plain handler functions (importing this module does no work).

Flow: pick a data set (built-in, real, or an upload), a decoder size, a preset, the
ablation switches and the baselines; Run evaluates everything in one job (Gradio's queue
runs one job at a time) and stores it in the SQLite runs registry; a chained plain
handler then fills the 3D viewers (Model3D outputs of generator handlers never render in
Gradio 6). Each browser session works in its own temporary folder, removed when the
session ends.
"""


import json
import re
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from necgs.baselines.base import get_codec
from necgs.errors import NecgsError
from necgs.evaluation import Cancelled, EvaluationResult, ResultsStore, evaluate, rd_figure
from necgs.io.datasets import list_datasets, resolve_dataset
from necgs.io.loading import MESH_SUFFIXES, load_meshes, safe_extract_zip, save_mesh
from necgs.io.mesh import Mesh
from necgs.paths import cache_dir
from necgs.visualize import error_colored_glb, legend_html, plain_glb, render_comparison_png

BASELINES = ("draco", "decimate-draco", "pointcloud-spsr", "quantdeepsdf", "gpcc", "vpcc", "pcgcv2")
DEFAULT_DATASET = "figures"
UPLOAD_LABEL = "(my upload)"
MAX_UPLOAD_FILES = 200
MAX_UPLOAD_BYTES = 200 * 1024**2
INITIAL_CONFIG = {"initial": 1, "dataset": DEFAULT_DATASET, "limit": 24, "width": "tiny", "epochs": 150}
TABLE_COLUMNS = ["codec", "label", "ratio_ply", "ratio_files", "bytes", "bits_per_vertex", "cd", "nc", "f1_005",
                 "f1_01", "cd_median", "empty_shapes", "encode_s", "decode_ms_per_shape", "status", "error"]

_SESSIONS: dict[str, dict[str, Any]] = {}
_LOCK = threading.Lock()


# ---------------------------------------------------------------------------- sessions
def session_dir(session: str) -> Path:
    """The session's private folder (created on first use)."""
    with _LOCK:
        entry = _SESSIONS.setdefault(session, {"cancel": threading.Event()})
        if "dir" not in entry:
            entry["dir"] = Path(tempfile.mkdtemp(prefix="necgs-session-"))
        return entry["dir"]


def cancel_event(session: str) -> threading.Event:
    """The session's cancel flag."""
    with _LOCK:
        return _SESSIONS.setdefault(session, {"cancel": threading.Event()})["cancel"]


def end_session(session: str) -> None:
    """Remove a session's folder and state."""
    with _LOCK:
        entry = _SESSIONS.pop(session, None)
    if entry and "dir" in entry:
        shutil.rmtree(entry["dir"], ignore_errors=True)


# ---------------------------------------------------------------------------- uploads
def stage_upload(files: list[str] | None, dest: Path) -> tuple[Path, list[str]]:
    """Copy uploaded mesh files / zips into ``dest/upload``; returns the folder and notes.

    Zip entries stay inside the folder; non-mesh files are reported and skipped; size and
    count limits apply before anything is written.
    """
    if not files:
        raise NecgsError("no files uploaded")
    if len(files) > MAX_UPLOAD_FILES:
        raise NecgsError(f"{len(files)} files uploaded, the limit is {MAX_UPLOAD_FILES}")
    total = sum(Path(f).stat().st_size for f in files)
    if total > MAX_UPLOAD_BYTES:
        raise NecgsError(f"upload of {total / 1e6:.0f} MB exceeds the {MAX_UPLOAD_BYTES / 1e6:.0f} MB limit")
    folder = dest / "upload"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    notes = []
    for f in files:
        p = Path(f)
        if p.suffix.lower() == ".zip":
            extracted = safe_extract_zip(p, folder / p.stem, max_files=MAX_UPLOAD_FILES, max_bytes=MAX_UPLOAD_BYTES)
            skipped = [e.name for e in extracted if e.suffix.lower() not in MESH_SUFFIXES]
            notes += [f"skipped {s}: not a mesh file" for s in skipped]
        elif p.suffix.lower() in MESH_SUFFIXES:
            shutil.copy(p, folder / re.sub(r"[^A-Za-z0-9._-]", "_", p.name))
        else:
            notes.append(f"skipped {p.name}: not a mesh file")
    return folder, notes


# ---------------------------------------------------------------------------- runs
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "x"


def run_dir(run: int) -> Path:
    """Where a run's meshes (originals and decoded) and downloads are kept."""
    return cache_dir("runs", str(run))


def save_run_meshes(run: int, result: EvaluationResult) -> None:
    """Keep a run's originals and decoded meshes (PLY) and its downloads, for viewers and reloads."""
    base = run_dir(run)
    for m in result.meshes:
        save_mesh(m, base / "original" / f"{_slug(m.name)}.ply")
    index = {"shapes": [m.name for m in result.meshes], "decoded": {}}
    for (codec, label), meshes in result.decoded.items():
        key = f"{codec}::{label}"
        folder = base / "decoded" / _slug(key)
        for m, orig in zip(meshes, result.meshes):
            save_mesh(Mesh(m.vertices, m.faces, orig.name), folder / f"{_slug(orig.name)}.ply")
        index["decoded"][key] = folder.name
        if codec == "necgs":
            (base / f"{_slug(label)}.ncgs").write_bytes(result.blobs[(codec, label)][0])
    (base / "index.json").write_text(json.dumps(index))


def run_index(run: int) -> dict:
    """Shapes and decoded variants stored for a run."""
    path = run_dir(run) / "index.json"
    return json.loads(path.read_text()) if path.is_file() else {"shapes": [], "decoded": {}}


def necgs_settings(width: str, preset: str, ssim: bool, deform: bool, autoencoder: bool, epochs: int | None) -> dict:
    """The NeCGS codec setting the controls describe."""
    setting = {"preset": preset, "width": int(width) if str(width).isdigit() else width,
               "ssim": bool(ssim), "deform": bool(deform), "autoencoder": bool(autoencoder)}
    if epochs:
        setting["epochs"] = int(epochs)
    return setting


def execute_run(dataset, codecs: list[str], necgs_setting: dict, limit: int, n_samples: int,
                progress=None, cancel: threading.Event | None = None, config_extra: dict | None = None) -> int:
    """Evaluate, store in the registry, keep meshes; returns the run id."""
    settings = {"necgs": [necgs_setting]} if "necgs" in codecs else {}
    for c in codecs:
        if c != "necgs":
            sweep = get_codec(c).sweep()
            settings[c] = sweep if len(sweep) <= 8 else sweep[:: max(len(sweep) // 6, 1)]
    result = evaluate(dataset, codecs, settings=settings, n_samples=n_samples, limit=limit, progress=progress,
                      cancel=cancel, keep_decoded=True)
    config = {"dataset": result.dataset, "codecs": codecs, "necgs": necgs_setting, "limit": limit,
              "samples": n_samples, **(config_extra or {})}
    run = ResultsStore().add_run(result, config)
    save_run_meshes(run, result)
    return run


def ensure_initial_run(progress=None) -> int:
    """The cached first-launch run on the default built-in set (computed once)."""
    store = ResultsStore()
    runs = store.list_runs(DEFAULT_DATASET)
    for _, row in runs.iterrows():
        cfg = json.loads(row.config)
        if all(cfg.get(k) == v for k, v in INITIAL_CONFIG.items()) and (run_dir(int(row.id)) / "index.json").is_file():
            return int(row.id)
    setting = necgs_settings(INITIAL_CONFIG["width"], "quick", True, True, False, INITIAL_CONFIG["epochs"])
    return execute_run(DEFAULT_DATASET, ["necgs", "draco", "decimate-draco"], setting, INITIAL_CONFIG["limit"],
                       20_000, progress=progress, config_extra=INITIAL_CONFIG)


def latest_run(dataset: str | None = None) -> int | None:
    """Id of the newest run (of a data set), if any."""
    runs = ResultsStore().list_runs(dataset)
    return int(runs.id.iloc[0]) if len(runs) else None


# ---------------------------------------------------------------------------- views
def run_views(run: int):
    """Plots, tables, shape and variant choices for a stored run."""
    store = ResultsStore()
    summary, per_shape = store.load_run(run)
    dataset = summary.dataset.iloc[0] if len(summary) else ""
    earlier = []
    for other in store.list_runs(dataset).id.tolist():
        if int(other) != run and len(earlier) < 3:
            earlier.append(store.load_run(int(other))[0])
    fig_cd = rd_figure(summary, "cd", highlight="necgs", earlier=earlier)
    fig_f1 = rd_figure(summary, "f1_005", highlight="necgs", earlier=earlier)
    table = summary[[c for c in TABLE_COLUMNS if c in summary]].round(5)
    index = run_index(run)
    variants = list(index["decoded"])
    necgs_variants = [v for v in variants if v.startswith("necgs::")]
    others = [v for v in variants if not v.startswith("necgs::")]
    return fig_cd, fig_f1, table, per_shape.round(5), index["shapes"], necgs_variants, others


def _load_run_mesh(run: int, key: str | None, shape: str) -> Mesh | None:
    index = run_index(run)
    if key is None:
        path = run_dir(run) / "original" / f"{_slug(shape)}.ply"
    else:
        if key not in index["decoded"]:
            return None
        path = run_dir(run) / "decoded" / index["decoded"][key] / f"{_slug(shape)}.ply"
    if not path.is_file():
        return None
    loaded = load_meshes([path])
    return loaded.meshes[0] if loaded.meshes else Mesh(np.zeros((0, 3)), np.zeros((0, 3)), shape)


def viewer_files(run: int | None, shape: str | None, necgs_key: str | None, other_key: str | None, session: str):
    """GLB paths for the original, NeCGS and the chosen baseline, plus the colour legend."""
    if run is None or not shape:
        return None, None, None, ""
    out = session_dir(session) / "view"
    out.mkdir(parents=True, exist_ok=True)
    original = _load_run_mesh(run, None, shape)
    if original is None:
        return None, None, None, ""
    tag = f"{run}_{_slug(shape)}"
    orig_path = plain_glb(original, out / f"orig_{tag}.glb")
    vmax = None
    paths = []
    for key in (necgs_key, other_key):
        rec = _load_run_mesh(run, key, shape) if key else None
        if rec is None or rec.n_faces == 0:
            paths.append(None)
            continue
        path, vmax = error_colored_glb(rec, original, out / f"{_slug(key)}_{tag}.glb", vmax)
        paths.append(str(path))
    legend = legend_html(vmax) if vmax else ""
    return str(orig_path), paths[0], paths[1], legend


def downloads(run: int | None, session: str) -> tuple[str | None, str | None]:
    """The run's .ncgs archive and a zip of its decoded NeCGS meshes."""
    if run is None:
        return None, None
    base = run_dir(run)
    archives = sorted(base.glob("*.ncgs"))
    index = run_index(run)
    folders = [base / "decoded" / f for k, f in index["decoded"].items() if k.startswith("necgs::")]
    zpath = None
    if folders:
        zpath = session_dir(session) / f"necgs_run{run}_decoded.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(folders[0].glob("*.ply")):
                zf.write(p, p.name)
        zpath = str(zpath)
    return (str(archives[0]) if archives else None), zpath


def reviewer_figure(run: int | None, shape: str | None, necgs_key: str | None, session: str) -> str | None:
    """Polyscope (EGL off-screen) PNG of original vs NeCGS with error colours."""
    if run is None or not shape or not necgs_key:
        return None
    original, decoded = _load_run_mesh(run, None, shape), _load_run_mesh(run, necgs_key, shape)
    if original is None or decoded is None or decoded.n_faces == 0:
        return None
    return str(render_comparison_png(original, decoded, session_dir(session) / f"reviewer_{run}_{_slug(shape)}.png"))


def codec_availability() -> tuple[list[str], str]:
    """Available baselines, and a note for the unavailable ones."""
    ok, notes = [], []
    for name in BASELINES:
        available, why = get_codec(name).available()
        if available:
            ok.append(name)
        else:
            notes.append(f"- **{name}**: {why}")
    return ok, ("Not available here:\n" + "\n".join(notes)) if notes else ""


def dataset_choices() -> list[str]:
    """Data set names for the dropdown."""
    return [d.name for d in list_datasets()] + [UPLOAD_LABEL]


def runs_table(dataset: str | None = None) -> pd.DataFrame:
    """The runs registry as a table."""
    runs = ResultsStore().list_runs(dataset)
    if not len(runs):
        return pd.DataFrame(columns=["id", "created", "dataset", "codecs"])
    runs["codecs"] = [", ".join(json.loads(c).get("codecs", [])) for c in runs.config]
    return runs[["id", "created", "dataset", "codecs"]]


# ---------------------------------------------------------------------------- layout
def build_demo():
    """Build the Blocks app (no computation happens here)."""
    import gradio as gr

    available, unavailable_note = codec_availability()
    with gr.Blocks(title="necgs: neural compression of mesh sets") as demo:
        run_state = gr.State(None)
        gr.Markdown("# necgs — neural compression for sets of 3D meshes\n"
                    "NeCGS (TSDF-Def volumes + a quantization-aware auto-decoder) beside the codecs people use, "
                    "with the metric's sampling floor. Every run is reproducible with `necgs evaluate`.")
        with gr.Row():
            with gr.Column(scale=1):
                dataset = gr.Dropdown(dataset_choices(), value=DEFAULT_DATASET, label="data set", elem_id="dataset")
                upload = gr.File(label="or upload meshes / a zip", file_count="multiple", type="filepath")
                limit = gr.Slider(2, 64, value=6, step=1, label="shapes (first N)", elem_id="limit")
                width = gr.Dropdown(["tiny", "small", "medium", "large"], value="small", label="decoder size", elem_id="width")
                preset = gr.Radio(["quick", "standard"], value="quick", label="resolution preset (quick K=32, standard K=64)")
                epochs = gr.Number(value=150, precision=0, label="training epochs", elem_id="epochs")
                with gr.Row():
                    ssim = gr.Checkbox(True, label="SSIM term")
                    deform = gr.Checkbox(True, label="deformation")
                    autoencoder = gr.Checkbox(False, label="auto-encoder")
                baselines = gr.CheckboxGroup(available, value=[b for b in ("draco", "decimate-draco") if b in available],
                                             label="baseline codecs", elem_id="baselines")
                gr.Markdown(unavailable_note)
                with gr.Row():
                    run_btn = gr.Button("Run", variant="primary", elem_id="run")
                    cancel_btn = gr.Button("Cancel", elem_id="cancel")
                status = gr.Markdown("", elem_id="status")
            with gr.Column(scale=2):
                with gr.Row():
                    plot_cd = gr.Plot(label="CD vs ratio", elem_id="rd_cd")
                    plot_f1 = gr.Plot(label="F1@0.005 vs ratio", elem_id="rd_f1")
                table = gr.Dataframe(label="per codec and setting (sortable)", elem_id="summary", interactive=False)
        with gr.Row():
            shape = gr.Dropdown([], label="shape", elem_id="shape")
            necgs_variant = gr.Dropdown([], label="NeCGS run", elem_id="necgs_variant")
            other_variant = gr.Dropdown([], label="baseline to compare", elem_id="other_variant")
        with gr.Row():
            view_orig = gr.Model3D(label="original", elem_id="view_original", clear_color=[1, 1, 1, 1])
            view_necgs = gr.Model3D(label="NeCGS (error colours)", elem_id="view_necgs", clear_color=[1, 1, 1, 1])
            view_other = gr.Model3D(label="baseline (error colours)", elem_id="view_other", clear_color=[1, 1, 1, 1])
        legend = gr.HTML("")
        with gr.Accordion("per-shape metrics", open=False):
            per_shape = gr.Dataframe(interactive=False)
        with gr.Row():
            archive_file = gr.File(label="NeCGS archive (.ncgs)")
            decoded_zip = gr.File(label="decoded NeCGS meshes (zip)")
        with gr.Accordion("reviewer figure (polyscope, off-screen)", open=False):
            fig_btn = gr.Button("Render original vs NeCGS")
            fig_img = gr.Image(label="reviewer figure", type="filepath")
        with gr.Accordion("past runs", open=False):
            runs = gr.Dataframe(interactive=False)
            with gr.Row():
                run_id = gr.Number(label="run id", precision=0)
                load_btn = gr.Button("Load run")

        view_outputs = [plot_cd, plot_f1, table, per_shape, shape, necgs_variant, other_variant]

        def show_run(run):
            if run is None:
                return [None, None, None, None, gr.update(choices=[]), gr.update(choices=[]), gr.update(choices=[])]
            fig_cd, fig_f1, tab, per, shapes, nec, oth = run_views(int(run))
            return [fig_cd, fig_f1, tab, per,
                    gr.update(choices=shapes, value=shapes[0] if shapes else None),
                    gr.update(choices=nec, value=nec[0] if nec else None),
                    gr.update(choices=oth, value=oth[-1] if oth else None)]

        def on_load(request: gr.Request):
            run = latest_run(DEFAULT_DATASET) or latest_run()
            return [run, *show_run(run), runs_table(), f"Showing run {run}." if run else "No runs yet: press Run."]

        def on_run(ds, files, lim, wd, pr, ep, use_ssim, use_deform, use_ae, chosen, request: gr.Request,
                   progress=gr.Progress()):
            session = request.session_hash or "default"
            cancel = cancel_event(session)
            cancel.clear()
            notes = []
            try:
                source = ds
                if ds == UPLOAD_LABEL:
                    source, notes = stage_upload(files, session_dir(session))
                else:
                    resolve_dataset(ds)
                setting = necgs_settings(wd, pr, use_ssim, use_deform, use_ae, ep)
                run = execute_run(source, ["necgs", *chosen], setting, int(lim), 20_000,
                                  progress=lambda stage, frac: progress(frac, desc=stage), cancel=cancel)
            except Cancelled:
                return [gr.update(), *[gr.update()] * len(view_outputs), gr.update(), "Cancelled."]
            except NecgsError as exc:
                return [gr.update(), *[gr.update()] * len(view_outputs), gr.update(), f"Error: {exc}"]
            text = f"Run {run} done." + ("".join(f"\n- {n}" for n in notes) if notes else "")
            return [run, *show_run(run), runs_table(), text]

        def on_cancel(request: gr.Request):
            cancel_event(request.session_hash or "default").set()
            return "Cancelling after the current stage..."

        def on_view(run, shp, nec, oth, request: gr.Request):
            return viewer_files(run, shp, nec, oth, request.session_hash or "default")

        def on_downloads(run, request: gr.Request):
            return downloads(run, request.session_hash or "default")

        def on_load_run(rid):
            run = int(rid) if rid else None
            return [run, *show_run(run), f"Showing run {run}."]

        def on_figure(run, shp, nec, request: gr.Request):
            return reviewer_figure(run, shp, nec, request.session_hash or "default")

        viewers = [view_orig, view_necgs, view_other, legend]
        demo.load(on_load, None, [run_state, *view_outputs, runs, status]).then(
            on_view, [run_state, shape, necgs_variant, other_variant], viewers).then(
            on_downloads, [run_state], [archive_file, decoded_zip])
        run_btn.click(on_run, [dataset, upload, limit, width, preset, epochs, ssim, deform, autoencoder, baselines],
                      [run_state, *view_outputs, runs, status], concurrency_limit=1).then(
            on_view, [run_state, shape, necgs_variant, other_variant], viewers).then(
            on_downloads, [run_state], [archive_file, decoded_zip])
        cancel_btn.click(on_cancel, None, status, queue=False)
        for picker in (shape, necgs_variant, other_variant):
            picker.input(on_view, [run_state, shape, necgs_variant, other_variant], viewers)
        load_btn.click(on_load_run, [run_id], [run_state, *view_outputs, status]).then(
            on_view, [run_state, shape, necgs_variant, other_variant], viewers).then(
            on_downloads, [run_state], [archive_file, decoded_zip])
        fig_btn.click(on_figure, [run_state, shape, necgs_variant], fig_img)
        def on_unload(request: gr.Request):
            end_session(request.session_hash or "default")

        demo.unload(on_unload)
    return demo
