"""Views built from a stored run: labels, tables, RD figures, 3D viewer files and downloads.

Everything here reads the run store (:mod:`necgs.evaluation.runs`); nothing trains. Runs are named
by their id and their settings (never by a position), NeCGS variants and codecs keep one
colour in every figure, and the baseline shown beside NeCGS defaults to the peer setting
nearest in bytes (a matched-rate comparison).
"""

from __future__ import annotations

import shutil
import zipfile
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from necgs.baselines.base import get_codec
from necgs.errors import NecgsError
from necgs.evaluation.figures import rd_figure, series_by_preset, stored_setting
from necgs.evaluation.runs import RunStore, slug
from necgs.io.loading import load_meshes
from necgs.io.mesh import Mesh
from necgs.paths import REPO_ROOT
from necgs.settings import read_setting
from necgs.visualize import error_colored_glb, legend_html, plain_glb, render_comparison_png, vertex_errors
from necgs.webapp.export import plotly_pngs
from necgs.webapp.first_launch import SHIPPED_RESULTS, shipped_summary
from necgs.webapp.sessions import SessionClosed, closed, session_dir
from necgs.webapp.tables import metrics_table

MAX_VARIANT_VIEWERS = 4
#: The run id the page holds while it shows the shipped benchmark (stored runs count from 1).
SHIPPED_RUN = -1


def is_stored(run: int | None) -> bool:
    """Whether ``run`` is a stored run (not nothing, not the shipped benchmark)."""
    return run is not None and run != SHIPPED_RUN


# ---------------------------------------------------------------------------- labels
def variant_label(setting: dict) -> str:
    """A NeCGS setting's label (e.g. ``quick tiny (no ssim)``)."""
    return get_codec("necgs").setting_label(setting)


def run_label(run: int, config: dict | None = None) -> str:
    """A run named by its id and its settings: ``run 7: cad x2, necgs quick tiny | quick tiny (no ssim); draco``."""
    config = config if config is not None else RunStore().config(run)
    settings = config.get("necgs", [])
    on = [_curve_name(s) for s in settings]
    curves = Counter(c for c in on if c)
    named = [variant_label(s) for s, c in zip(settings, on) if not c]
    variants = " | ".join(named + [f"{name} curve x{n}" for name, n in curves.items()])
    peers = ", ".join(c for c in config.get("codecs", []) if c != "necgs")
    shapes = config.get("shapes") or config.get("limit")
    text = f"run {run}: {config.get('dataset', '?')} x{shapes}, necgs {variants or '-'}"
    if config.get("ablation"):
        text += f" [ablation: {config['ablation']}]"
    if config.get("benchmark"):
        text += f" [benchmark {config['benchmark']}]"
    return text + (f"; {peers}" if peers else "")


def _setting_columns(settings: list[dict]) -> dict[str, str]:
    """Every NeCGS setting of a run, one column each (variants joined by ' / ')."""
    values: dict[str, list[str]] = {}
    for s in settings:
        try:
            tree = read_setting(s)
        except NecgsError:
            continue
        if tree.prior is not None:  # a prior fixes its own decoder: the columns describe trained decoders
            continue
        cfg = tree.config
        row = {
            "preset": tree.preset,
            "width": str(cfg.width),
            "K": str(cfg.fit.resolution),
            "epochs": str(cfg.train.epochs),
            "SSIM": "on" if cfg.train.use_ssim else "off",
            "deformation": "on" if cfg.deform else "off",
            "model": "auto-encoder" if cfg.autoencoder else "auto-decoder",
            "bits w/f": f"{cfg.train.weight_bits}/{cfg.train.feature_bits}",
            "lambda_R": f"{cfg.train.lambda_rate:g}",
        }
        for k, v in row.items():
            values.setdefault(k, [])
            if v not in values[k]:
                values[k].append(v)
    return {k: " / ".join(v) for k, v in values.items()}


def runs_table(owners: list[str | None]) -> pd.DataFrame:
    """The runs registry (the runs of ``owners``: :func:`necgs.webapp.sessions.visible_owners`)
    with every setting of each run."""
    rows = []
    for r in RunStore().runs(owners=owners).itertuples():
        config = r.config
        settings = config.get("necgs") or []
        rows.append(
            {
                "id": int(r.id),
                "created": r.created,
                "dataset": r.dataset,
                "shapes": config.get("shapes") or config.get("limit"),
                "variants": " | ".join(variant_label(s) for s in settings),
                "decoder": decoder_text(settings),
                **_setting_columns(settings),
                "ablation": config.get("ablation", ""),
                "peers": ", ".join(c for c in config.get("codecs", []) if c != "necgs"),
                "first launch": "yes" if config.get("initial") else "",
                "status": "" if r.status == "done" else r.status,
            }
        )
    columns = [
        "id",
        "created",
        "dataset",
        "shapes",
        "variants",
        "decoder",
        "preset",
        "width",
        "K",
        "epochs",
        "SSIM",
        "deformation",
        "model",
        "bits w/f",
        "ablation",
        "peers",
        "first launch",
        "status",
    ]
    return pd.DataFrame(rows, columns=columns)


def decoder_text(settings: list[dict]) -> str:
    """How a run's NeCGS decoders were made: ``trained``, ``prior bodies`` or ``trained + prior bodies``."""
    trees = [read_setting(s) for s in settings]
    trained = ["trained"] if any(t.prior is None for t in trees) else []
    priors = [f"prior {t.prior}" + (" fine-tuned" if t.prior_fit.fine_tune_steps else "") for t in trees if t.prior]
    return " + ".join(trained + priors)


def run_choices(owners: list[str | None]) -> list[tuple[str, int]]:
    """(label, id) of the runs of ``owners``, newest first, for the overlay picker."""
    return [(run_label(int(r.id), r.config), int(r.id)) for r in RunStore().runs(owners=owners).itertuples()]


def visible_runs(runs: list[int] | None, owners: list[str | None]) -> list[int]:
    """The ids among ``runs`` (e.g. the overlays a request names) that belong to ``owners``."""
    shown = set(RunStore().runs(owners=owners).id)
    return [int(r) for r in runs or [] if int(r) in shown]


# ---------------------------------------------------------------------------- tables and figures
def with_series(summary: pd.DataFrame, per_setting: bool) -> pd.DataFrame:
    """Add the ``series`` each row is drawn in: each NeCGS setting its own, named by it
    (``per_setting``; a stored run), or one per codec (a sweep drawn as a curve). Settings that
    name a ``curve`` (the rate-curve factor's points) share one series, drawn as a line."""
    out = summary.copy()
    out["series"] = out.codec
    if per_setting:
        nec = out.codec == "necgs"
        out.loc[nec, "series"] = "necgs " + out.loc[nec, "label"].astype(str)
        if "setting" in out:
            curves = out.loc[nec, "setting"].map(_curve_name)
            on_curve = curves.notna()
            out.loc[curves.index[on_curve], "series"] = "necgs " + curves[on_curve].astype(str) + " curve"
    return out


def _curve_name(setting) -> str | None:
    """The ``curve`` a stored setting (JSON text or dict) belongs to, if any."""
    return stored_setting(setting).get("curve")


def matched_peer(summary: pd.DataFrame, necgs_key: str | None) -> str | None:
    """The peer setting nearest in bytes to a NeCGS variant (``codec::label``)."""
    ok = summary[(summary.status == "ok") & (summary.codec != "floor")]
    peers = ok[ok.codec != "necgs"]
    target = ok[(ok.codec == "necgs") & (ok.label == (necgs_key or "").partition("::")[2])]
    if not len(peers) or not len(target):
        return None
    gap = (np.log(peers.bytes.astype(float)) - np.log(float(target.bytes.iloc[0]))).abs()
    best = peers.loc[gap.idxmin()]
    return f"{best.codec}::{best.label}"


def viewer_title(summary: pd.DataFrame, key: str | None, role: str) -> str:
    """A viewer's title: codec, setting, ratio, CD and F1 of the shown setting."""
    if not key:
        return role
    codec, _, label = key.partition("::")
    row = summary[(summary.codec == codec) & (summary.label == label)]
    if not len(row):
        return f"{role}: {codec} {label}"
    r = row.iloc[0]
    cd, median = float(r.cd), float(r.get("cd_median", np.nan))
    if np.isfinite(cd):
        quality = f"CD {1e3 * cd:.2f}e-3, F1 {float(r.f1_005):.3f}"
    elif np.isfinite(median):
        quality = f"median CD {1e3 * median:.2f}e-3 ({int(r.empty_shapes)} shapes empty)"
    else:
        quality = "no surface decoded"
    return f"{role}: {codec} {label} | {float(r.ratio_ply):.0f}x, {quality}"


@dataclass
class RunView:
    """What the page shows of one run (or of the shipped benchmark, ``run`` = :data:`SHIPPED_RUN`)."""

    run: int
    label: str
    summary: pd.DataFrame
    per_shape: pd.DataFrame
    figures: tuple
    table: pd.DataFrame
    shapes: list[str] = field(default_factory=list)
    necgs_keys: list[str] = field(default_factory=list)
    peer_keys: list[str] = field(default_factory=list)
    ablation: str = ""


def _figures(summary: pd.DataFrame, overlays: list[tuple[str, pd.DataFrame]], title: str) -> tuple:
    figs = []
    for metric in ("cd", "f1_005"):
        fig = rd_figure(summary, metric, highlight="necgs", overlays=overlays)
        fig.update_layout(
            title=f"{title}<br><sub>{fig.layout.title.text}</sub>",
            height=430,
            margin={"l": 60, "r": 10, "t": 70, "b": 50},
            showlegend=True,  # also for one series (a prior variant shown before the rest is computed)
        )
        figs.append(fig)
    return tuple(figs)


def overlay_summaries(runs: list[int], exclude: int | None) -> list[tuple[str, pd.DataFrame]]:
    """(label, summary) of the chosen past runs, named by id and settings."""
    store = RunStore()
    out = []
    for other in runs or []:
        if other == exclude:
            continue
        summary = with_series(store.load(int(other))[0], True)
        out.append((f"run {other}", summary))
    return out


def build_run_view(run: int, overlays: list[int] | None = None) -> RunView:
    """The figures, tables and choices of a stored run, with past runs overlaid."""
    store = RunStore()
    config = store.config(run)
    summary, per_shape = store.load(run)
    summary = with_series(summary, True)
    index = store.index(run)
    label = run_label(run, config)
    keys = [k for k in index["decoded"]]
    title = f"run {run}: {config.get('dataset', '?')} x{config.get('shapes') or config.get('limit')}"
    return RunView(
        run,
        label,
        summary,
        per_shape,
        _figures(summary, overlay_summaries(overlays or [], run), title),
        metrics_table(summary),
        index["shapes"],
        [k for k in keys if k.startswith("necgs::")],
        [k for k in keys if not k.startswith("necgs::")],
        config.get("ablation", ""),
    )


def shipped_view(overlays: list[int] | None = None) -> RunView:
    """The benchmark shipped with the project (no meshes: figures and table only)."""
    summary = series_by_preset(shipped_summary())
    label = f"shipped benchmark: humans_ama, all {int(summary.n_shapes.max())} shapes ({SHIPPED_RESULTS.as_posix()})"
    title = f"shipped: humans_ama x{int(summary.n_shapes.max())}"
    return RunView(
        SHIPPED_RUN,
        label,
        summary,
        pd.DataFrame(),
        _figures(summary, overlay_summaries(overlays or [], None), title),
        metrics_table(summary),
    )


def shown_view(run: int, overlays: list[int] | None = None) -> RunView:
    """The view of what the page shows: a stored run, or the shipped benchmark (:data:`SHIPPED_RUN`)."""
    return build_run_view(run, overlays) if is_stored(run) else shipped_view(overlays)


# ---------------------------------------------------------------------------- meshes
def load_run_mesh(run: int, kind: str, key: str | None, shape: str) -> Mesh | None:
    """A stored mesh of a run: ``original``, ``decoded`` (of ``key``) or ``fitted`` (of a NeCGS ``key``)."""
    path = RunStore().mesh_file(run, kind, key, shape)
    if path is None:
        return None
    loaded = load_meshes([path])
    return loaded.meshes[0] if loaded.meshes else Mesh.empty(shape)


@dataclass
class ViewerFiles:
    """GLB files for the viewers and the colour scale they share."""

    original: str | None = None
    coloured: list[str | None] = field(default_factory=list)
    vmax: float | None = None

    @property
    def legend(self) -> str:
        """The HTML colour bar of the shared scale."""
        return legend_html(self.vmax) if self.vmax else ""


def viewer_files(
    run: int | None,
    shape: str | None,
    keys: list[str | None],
    session: str,
    kinds: list[str] | None = None,
    vmax: float | None = None,
) -> ViewerFiles:
    """The original as grey GLB and each key's mesh error-coloured on one shared scale.

    The scale (``vmax``) is the one given, else set by the first mesh (the NeCGS one), so
    colours compare.
    """
    if not is_stored(run) or not shape:
        return ViewerFiles(coloured=[None] * len(keys))
    original = load_run_mesh(run, "original", None, shape)
    if original is None:
        return ViewerFiles(coloured=[None] * len(keys))
    tag = f"{run}_{slug(shape)}"
    try:
        out = session_dir(session) / "view"
        out.mkdir(exist_ok=True)  # not parents: a closed session's folder is not made again
        files = ViewerFiles(str(plain_glb(original, out / f"orig_{tag}.glb")), vmax=vmax)
        for key, kind in zip(keys, kinds or ["decoded"] * len(keys)):
            rec = load_run_mesh(run, kind, key, shape) if key else None
            if rec is None or rec.n_faces == 0:
                files.coloured.append(None)
                continue
            path, files.vmax = error_colored_glb(rec, original, out / f"{kind}_{slug(key)}_{tag}.glb", files.vmax)
            files.coloured.append(str(path))
    except (FileNotFoundError, SessionClosed):
        if not closed(session):
            raise
        return ViewerFiles(coloured=[None] * len(keys))  # the tab closed while its files were written
    return files


def reviewer_figure(
    run: int | None, shape: str | None, necgs_key: str | None, session: str, vmax: float | None = None
) -> str | None:
    """Polyscope (EGL off-screen) PNG of original vs NeCGS, titled, with the page's colour bar."""
    if not is_stored(run) or not shape or not necgs_key:
        return None
    original, decoded = load_run_mesh(run, "original", None, shape), load_run_mesh(run, "decoded", necgs_key, shape)
    if original is None or decoded is None or decoded.n_faces == 0:
        return None
    if vmax is None:
        vmax = float(max(np.percentile(vertex_errors(decoded, original), 98), 1e-4))
    path = session_dir(session) / f"reviewer_{run}_{slug(shape)}_{slug(necgs_key)}.png"
    title = f"run {run}, {shape}: original (left) vs {necgs_key.replace('::', ' ')} (right)"
    return str(render_comparison_png(original, decoded, path, title=title, vmax=vmax))


# ---------------------------------------------------------------------------- downloads
def downloads(
    run: int | None, necgs_key: str | None, summary: pd.DataFrame, session: str
) -> tuple[str | None, str | None, str | None]:
    """The shown NeCGS archive and a zip of its decoded meshes, copied into the session
    folder (which the server may serve), and the metrics as CSV."""
    if run is None:
        return None, None, None
    folder = session_dir(session) / "downloads"
    folder.mkdir(exist_ok=True)
    tag = f"run{run}" if run != SHIPPED_RUN else "shipped"
    csv = folder / f"necgs_{tag}_metrics.csv"
    summary.drop(columns=["series"], errors="ignore").to_csv(csv, index=False)
    if run == SHIPPED_RUN:
        return None, None, str(csv)
    store = RunStore()
    archives = store.index(run)["archives"]
    key = necgs_key if necgs_key in archives else next(iter(archives), None)
    if key is None:
        return None, None, str(csv)
    name = f"necgs_{tag}_{slug(key.partition('::')[2])}"
    archive = folder / f"{name}.ncgs"
    shutil.copyfile(store.archive_file(run, key), archive)
    zpath = folder / f"{name}_decoded.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in store.decoded_files(run, key):
            zf.write(p, p.name)
    return str(archive), str(zpath), str(csv)


def figure_pngs(view: RunView, session: str) -> list[str]:
    """The two RD figures as PNG, rendered by Debian chromium (the shipped benchmark's own PNGs when shown)."""
    folder = session_dir(session) / "downloads"
    folder.mkdir(exist_ok=True)
    tag = f"run{view.run}" if view.run != SHIPPED_RUN else "shipped"
    if view.run == SHIPPED_RUN:
        out = []
        for name in ("rd_cd", "rd_f1"):
            target = folder / f"necgs_{tag}_{name}.png"
            shutil.copyfile(REPO_ROOT / SHIPPED_RESULTS / f"{name}.png", target)
            out.append(str(target))
        return out

    targets = [folder / f"necgs_{tag}_{name}.png" for name in ("rd_cd", "rd_f1")]
    return [str(p) for p in plotly_pngs(list(view.figures), targets)]
