"""The work behind the page: uploads, runs and ablations, what a run keeps, the first-launch run.

A run evaluates NeCGS (one or several variants of its setting) beside the chosen peers on
one set of shapes in one job, stores the metrics in the SQLite runs registry and keeps,
under the cache's ``runs/<id>/``: the originals, every decoded mesh, each NeCGS archive,
and for each NeCGS variant the fitted TSDF-Def volumes before compression with their own
mesh (so the page can separate the error of the representation from that of compression).

A NeCGS variant is either a decoder trained on the set or a prior (a pretrained decoder,
:mod:`necgs.priors`) against which only each shape's feature is fitted. A prior variant takes
seconds, so when slower work follows, it runs first and the run is stored as "partial"
(:func:`run_stages`), which the page shows at once; the rest then replaces it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from necgs.baselines.base import get_codec
from necgs.config import PRESETS
from necgs.errors import NecgsError
from necgs.evaluation import EvaluationResult, ResultsStore, StageEvent, evaluate
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import MESH_SUFFIXES, LoadedSet, load_meshes, safe_extract_zip, save_mesh
from necgs.io.mesh import Mesh
from necgs.metrics import compare_meshes
from necgs.paths import cache_dir
from necgs.settings import page_setting, read_setting, setting_dict
from necgs.webapp.progress import JobProgress, Report

BASELINES = ("draco", "decimate-draco", "pointcloud-spsr", "quantdeepsdf", "gpcc", "vpcc", "pcgcv2")
DEFAULT_DATASET = "figures"
UPLOAD_LABEL = "(my upload)"
MAX_UPLOAD_FILES = 200
MAX_UPLOAD_BYTES = 200 * 1024**2
METRIC_SAMPLES = 20_000
INITIAL_CONFIG = {"initial": 1, "dataset": DEFAULT_DATASET, "limit": 24, "width": "tiny", "epochs": 150}
INITIAL_PEERS = ("draco", "decimate-draco")
#: The benchmark shown on the first page: all 88 AMA bodies against the peers (relative to the checkout).
SHIPPED_RESULTS = Path("benchmarks") / "results" / "rd_humans_ama_band_presets"

#: The factor whose variants are points of one rate-distortion curve (``"curve"`` in each setting):
#: widths x bits, as many points as decimation + Draco's sweep, all picked by default. The points are
#: the lower envelope of the measured rate table (``necgs/target_rate.py``) with the band loss.
RATE_CURVE = "rate curve (NeCGS as a curve)"
#: Ablation factor -> its variants (name -> overrides of the NeCGS setting); the first is the reference.
ABLATIONS: dict[str, dict[str, dict]] = {
    "SSIM term": {"with SSIM": {"ssim": True}, "without SSIM": {"ssim": False}},
    "deformation": {"TSDF-Def (with deformation)": {"deform": True}, "plain TSDF": {"deform": False}},
    "resolution K": {"K=32": {"resolution": 32}, "K=16": {"resolution": 16}, "K=64": {"resolution": 64}},
    "decoder size": {"tiny": {"width": "tiny"}, "small": {"width": "small"}, "medium": {"width": "medium"}},
    "auto-decoder vs auto-encoder": {"auto-decoder": {"autoencoder": False}, "auto-encoder": {"autoencoder": True}},
    "bits (weights and features)": {
        "6 bits": {"weight_bits": 6, "feature_bits": 6},
        "8 bits": {"weight_bits": 8, "feature_bits": 8},
        "4 bits": {"weight_bits": 4, "feature_bits": 4},
    },
    RATE_CURVE: {
        f"{width}, {bits} bits": {"width": width, "weight_bits": bits, "feature_bits": bits, "curve": "rate"}
        for width, bits in (
            ("tiny", 4),
            ("tiny", 5),
            ("small", 4),
            (10, 6),
            ("small", 5),
            ("medium", 4),
            ("medium", 5),
            ("medium", 6),
        )
    },
    "rate term lambda_R": {
        "lambda_R 0": {"lambda_rate": 0.0},
        "lambda_R 1": {"lambda_rate": 1.0},
        "lambda_R 0.05": {"lambda_rate": 0.05},
        "lambda_R 3": {"lambda_rate": 3.0},
    },
}


class UploadError(NecgsError):
    """An upload that cannot be used.

    Attributes:
        title: What went wrong.
        details: One line per file: its name and why it was not used.
    """

    def __init__(self, title: str, details: list[str] | None = None) -> None:
        self.title, self.details = title, list(details or [])
        super().__init__(title + (": " + "; ".join(self.details) if self.details else ""))


# ---------------------------------------------------------------------------- messages
_ABS_PATH = re.compile(r"(?:/[^\s/:;,'\"()]+)+/([^\s/:;,'\"()]+)")


def scrub_paths(text: str) -> str:
    """A message with every absolute server path shortened to its file name."""
    return _ABS_PATH.sub(r"\1", str(text))


# ---------------------------------------------------------------------------- uploads
def stage_upload(files: list[str] | None, dest: Path) -> tuple[Path, list[str]]:
    """Copy uploaded mesh files / zips into ``dest/upload``; returns the folder and notes.

    Zip entries stay inside the folder; non-mesh files are reported and skipped; size and
    count limits apply before anything is written.

    Raises:
        UploadError: Nothing uploaded, over the limits, or a zip entry pointing outside.
    """
    if not files:
        raise UploadError("no files uploaded")
    if len(files) > MAX_UPLOAD_FILES:
        raise UploadError(f"{len(files)} files uploaded, the limit is {MAX_UPLOAD_FILES}")
    total = sum(Path(f).stat().st_size for f in files)
    if total > MAX_UPLOAD_BYTES:
        raise UploadError(f"upload of {total / 1e6:.0f} MB exceeds the {MAX_UPLOAD_BYTES / 1e6:.0f} MB limit")
    folder = dest / "upload"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    notes = []
    for f in files:
        p = Path(f)
        if p.suffix.lower() == ".zip":
            try:
                extracted = safe_extract_zip(p, folder / p.stem, max_files=MAX_UPLOAD_FILES, max_bytes=MAX_UPLOAD_BYTES)
            except NecgsError as exc:
                raise UploadError("the zip could not be unpacked", [f"{p.name}: {scrub_paths(exc)}"]) from None
            notes += [f"skipped {e.name}: not a mesh file" for e in extracted if e.suffix.lower() not in MESH_SUFFIXES]
        elif p.suffix.lower() in MESH_SUFFIXES:
            shutil.copy(p, folder / re.sub(r"[^A-Za-z0-9._-]", "_", p.name))
        else:
            notes.append(f"skipped {p.name}: not a mesh file (use {', '.join(sorted(MESH_SUFFIXES))} or a zip)")
    return folder, notes


def load_upload(files: list[str] | None, dest: Path) -> tuple[LoadedSet, list[str]]:
    """Stage and load an upload; every unusable file becomes a note naming it and why.

    Raises:
        UploadError: No usable mesh at all (the message names each file and its reason).
    """
    folder, notes = stage_upload(files, dest)
    loaded = load_meshes(folder)
    for failure in loaded.failures:
        notes.append(f"skipped {_relative(failure.source, folder)}: {scrub_paths(failure.reason)}")
    if not loaded.meshes:
        raise UploadError("no usable mesh in the upload", notes or ["the upload holds no mesh file"])
    return loaded, notes


def _relative(source: str, folder: Path) -> str:
    try:
        return str(Path(source).relative_to(folder))
    except ValueError:
        return Path(source).name


# ---------------------------------------------------------------------------- decoder choice
#: The decoder choices: a decoder trained on the set (the default), a prior, both, or a prior
#: with and without a fine-tuned delta of its decoder.
TRAIN_DECODER = "train a decoder for this set"
PRIOR_CHOICE = "prior: "
BOTH_CHOICE = "both: train a decoder + prior "
FINE_TUNE_CHOICE = "prior, and prior + fine-tuned delta: "
#: Fine-tuning steps of the app's fine-tuned prior variant (``compress --fine-tune``).
FINE_TUNE_STEPS = 200


def installed_priors() -> list[dict]:
    """The installed priors (:func:`necgs.priors.installed.list_priors`), one per name (the first found wins)."""
    from necgs.priors.installed import list_priors

    seen: dict[str, dict] = {}
    for info in list_priors():
        if info.get("name"):
            seen.setdefault(str(info["name"]), info)
    return list(seen.values())


def decoder_choices(priors: list[dict] | None = None) -> list[str]:
    """The decoder choices: training on the set, then per installed prior itself and both."""
    priors = installed_priors() if priors is None else priors
    out = [TRAIN_DECODER]
    for info in priors:
        out += [f"{PRIOR_CHOICE}{info['name']}", f"{BOTH_CHOICE}{info['name']}", f"{FINE_TUNE_CHOICE}{info['name']}"]
    return out


def decoder_note(priors: list[dict] | None = None) -> str:
    """One line on the installed priors (what each was trained on), for the decoder control."""
    priors = installed_priors() if priors is None else priors
    if not priors:
        return "No prior is installed (necgs prior train ... puts one in NECGS_PRIOR_DIRS), so the decoder is trained."
    described = "; ".join(
        f"{p['name']} (K={p.get('resolution')}, {(p.get('bytes') or 0) / 1e3:.0f} kB, trained on "
        f"{', '.join(map(str, p.get('trained_on') or [])) or '?'})"
        for p in priors
    )
    return f"A prior is a decoder pretrained on other shapes; only each shape's feature is fitted: {described}."


def parse_decoder(choice: str | None) -> tuple[bool, str | None, bool]:
    """(train a decoder on the set?, the prior's name or None, add a fine-tuned prior?) of a choice.

    Raises:
        NecgsError: Not one of :func:`decoder_choices`' forms.
    """
    text = str(choice or TRAIN_DECODER)
    if text == TRAIN_DECODER:
        return True, None, False
    for prefix, train, tune in (
        (PRIOR_CHOICE, False, False),
        (BOTH_CHOICE, True, False),
        (FINE_TUNE_CHOICE, False, True),
    ):
        if text.startswith(prefix) and text[len(prefix) :].strip():
            return train, text[len(prefix) :].strip(), tune
    raise NecgsError(f"unknown decoder choice {text!r}; choose {TRAIN_DECODER!r} or an installed prior")


def decoder_choice(settings: list[dict]) -> str:
    """The decoder choice that made these NeCGS settings (the inverse of :func:`parse_decoder`)."""
    trees = [read_setting(s) for s in settings]
    priors = [t.prior for t in trees if t.prior is not None]
    if not priors:
        return TRAIN_DECODER
    if any(t.prior_fit.fine_tune_steps for t in trees):
        return f"{FINE_TUNE_CHOICE}{priors[0]}"
    trained = any(t.prior is None for t in trees)
    return f"{BOTH_CHOICE if trained else PRIOR_CHOICE}{priors[0]}"


def is_prior(setting: dict) -> bool:
    """Whether a NeCGS setting fits features against a prior (instead of training a decoder)."""
    return read_setting(setting).prior is not None


def prior_setting(name: str) -> dict:
    """The NeCGS setting of an installed prior, checked now: its name and the id it has.

    Raises:
        NecgsError: No installed prior of that name, or its file is damaged (one line, no server path).
    """
    from necgs.priors.ncgp import read_prior

    info = next((p for p in installed_priors() if p["name"] == name), None)
    if info is None:
        names = ", ".join(p["name"] for p in installed_priors()) or "none is installed now"
        raise NecgsError(f"prior {name!r} is not installed any more (installed: {names}); reload the page")
    try:
        prior = read_prior(info["file"])
    except (NecgsError, OSError) as exc:
        raise NecgsError(f"prior {name!r} cannot be read ({scrub_paths(exc)}); reinstall it or pick another") from None
    return setting_dict(prior=name, prior_id=prior.id)


def decoder_variants(choice: str | None, trained: list[dict], always_train: bool = False) -> list[dict]:
    """The NeCGS settings of a decoder choice: the ``trained`` settings (one, or an ablation's
    variants: ``always_train``), then the prior's (checked, :func:`prior_setting`).

    Raises:
        NecgsError: An unknown choice or a prior that is missing or damaged.
    """
    train, prior, tune = parse_decoder(choice)
    priors = [prior_setting(prior)] if prior else []
    if tune:
        priors.append(setting_dict(priors[0], fine_tune=FINE_TUNE_STEPS))
    return (list(trained) if train or always_train else []) + priors


# ---------------------------------------------------------------------------- settings
def necgs_settings(width: str, preset: str, ssim: bool, deform: bool, autoencoder: bool, epochs: int | None) -> dict:
    """The NeCGS codec setting the controls describe (each within what the page may ask for).

    Raises:
        ConfigError: A value the page may not ask for (one line naming it).
    """
    controls = {"preset": preset, "width": width, "ssim": ssim, "deform": deform, "autoencoder": autoencoder}
    return page_setting({**controls, "epochs": epochs or None})


def ablation_variants(factor: str, values: list[str], base: dict) -> list[dict]:
    """NeCGS settings of an ablation: ``base`` with each chosen value of ``factor`` (reference first).

    Raises:
        NecgsError: Unknown factor or value, or fewer than two values.
    """
    if factor not in ABLATIONS:
        raise NecgsError(f"unknown ablation factor {factor!r}; choose one of {', '.join(ABLATIONS)}")
    known = ABLATIONS[factor]
    chosen = [v for v in known if v in (values or [])]
    unknown = [v for v in values or [] if v not in known]
    if unknown:
        raise NecgsError(f"{factor} has no variant {unknown[0]!r}; choose among {', '.join(known)}")
    if len(chosen) < 2:
        raise NecgsError(f"an ablation compares at least two variants: pick two or more values of {factor}")
    return [setting_dict(base, **known[v]) for v in chosen]


def peer_settings(codecs: list[str]) -> dict[str, list[dict]]:
    """Each peer's sweep, thinned to about six settings."""
    settings = {}
    for c in codecs:
        sweep = get_codec(c).sweep()
        settings[c] = sweep if len(sweep) <= 8 else sweep[:: max(len(sweep) // 6, 1)]
    return settings


# ---------------------------------------------------------------------------- runs
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "x"


def run_dir(run: int) -> Path:
    """Where a run's meshes (originals and decoded), archives and fitted volumes are kept."""
    return cache_dir("runs", str(run))


def load_source(dataset: str | LoadedSet) -> tuple[str, LoadedSet]:
    """A data set's display name and its loaded meshes."""
    if isinstance(dataset, LoadedSet):
        return "upload", dataset
    return str(dataset), load_meshes(resolve_dataset(dataset))


def execute_run(
    dataset: str | LoadedSet,
    codecs: list[str],
    variants: list[dict],
    limit: int,
    n_samples: int,
    progress: Report | None = None,
    cancel: threading.Event | None = None,
    config_extra: dict | None = None,
) -> int:
    """Evaluate NeCGS (each variant) and the peers in one job, store it, keep its files; returns the run id.

    The arguments are :func:`run_stages`'; this waits for the last stage.
    """
    *_, last = run_stages(dataset, codecs, variants, limit, n_samples, progress, cancel, config_extra)
    return last.run


@dataclass(frozen=True)
class RunStage:
    """What a job has stored so far.

    Attributes:
        run: The run id (the same for every stage of a job).
        final: Whether the run is complete (else its first NeCGS variants only, the rest pending).
        ready: Labels of the NeCGS variants computed so far.
        pending: (codec, label) of each setting still to compute.
        seconds: Seconds since the job started.
    """

    run: int
    final: bool
    ready: tuple[str, ...] = ()
    pending: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0


def run_stages(
    dataset: str | LoadedSet,
    codecs: list[str],
    variants: list[dict],
    limit: int,
    n_samples: int,
    progress: Report | None = None,
    cancel: threading.Event | None = None,
    config_extra: dict | None = None,
) -> Iterator[RunStage]:
    """Evaluate NeCGS (each variant) and the peers, storing the run as soon as a first part is ready.

    Prior variants (:func:`is_prior`) take seconds, so when slower work follows they run first
    and the run is stored with status "partial" (their rows, and a "pending" row for every
    other setting, so each keeps its place and colour) and yielded; the rest then replaces it
    under the same id. A job that fails or is cancelled after that removes the partial run.

    Args:
        dataset: A data set name or path, or loaded meshes (an upload).
        codecs: "necgs" and the peers' names.
        variants: The NeCGS settings (several: an ablation or a decoder and a prior; the first
            is the reference).
        limit: Use the first ``limit`` shapes.
        n_samples: Surface samples per metric.
        progress: report(fraction of the job, description), monotone.
        cancel: Set to stop between stages.
        config_extra: More to record in the run's configuration (e.g. the ablation factor).

    Yields:
        A :class:`RunStage` after the prior variants (only when more follows), then the final one.
    """
    t0 = time.perf_counter()
    name, loaded = load_source(dataset)
    if not loaded.meshes:
        raise NecgsError(f"{name}: no usable mesh")
    loaded = LoadedSet(loaded.meshes[:limit], loaded.failures, loaded.sources[:limit], loaded.source_bytes[:limit])
    variants = list(variants) if "necgs" in codecs else []
    quick = [v for v in variants if is_prior(v)]
    slow = [v for v in variants if not is_prior(v)]
    peers = peer_settings([c for c in codecs if c != "necgs"])
    split = bool(quick) and bool(slow or any(peers.values()))
    order = {"necgs": quick + slow, **peers} if split else {"necgs": variants, **peers}
    tracker = JobProgress.for_run(codecs, order, len(loaded.meshes), progress or (lambda f, t: None))
    config = {
        "dataset": name,
        "codecs": codecs,
        "necgs": variants,
        "limit": limit,
        "samples": n_samples,
        "shapes": len(loaded.meshes),
        **(config_extra or {}),
    }
    store = ResultsStore()

    def run_part(part_codecs: list[str], settings: dict, offset: int, last: bool) -> tuple[EvaluationResult, dict]:
        def on_stage(event: StageEvent) -> None:
            tracker.on_stage(event if event.index < 0 else replace(event, index=event.index + offset))

        result = evaluate(
            loaded,
            part_codecs,
            settings=settings,
            n_samples=n_samples,
            cancel=cancel,
            keep_decoded=True,
            on_stage=on_stage,
        )
        fitted = add_representation_metrics(result, settings.get("necgs", []), n_samples, tracker if last else None)
        return result, fitted

    if not split:
        result, fitted = run_part(codecs, {**({"necgs": variants} if "necgs" in codecs else {}), **peers}, 0, True)
        result = _ordered(result, name, variants)
        run = store.add_run(result, config)
        save_run_files(run, result, fitted)
        tracker.finishing(1.0, "saved")
        yield RunStage(run, True, _labels(variants), (), time.perf_counter() - t0)
        return
    first, fitted = run_part(["necgs"], {"necgs": quick}, 0, False)
    rest_codecs = [c for c in codecs if c != "necgs" or slow]
    pending = [("necgs", s) for s in slow] + [(c, s) for c, sweep in peers.items() for s in sweep]
    partial = _ordered(first, name, variants, pending)
    run = store.add_run(partial, config, status="partial")
    try:
        save_run_files(run, partial, fitted)
        yield RunStage(
            run,
            False,
            _labels(quick),
            tuple((c, get_codec(c).setting_label(s)) for c, s in pending),
            time.perf_counter() - t0,
        )
        rest, fitted_rest = run_part(rest_codecs, {**({"necgs": slow} if slow else {}), **peers}, len(quick), True)
        result = _ordered(_merged(first, rest), name, variants)
        store.replace_run(run, result, config)
        save_run_files(run, result, {**fitted, **fitted_rest}, keep=set(partial.decoded))
    except BaseException:
        discard_run(run)
        raise
    tracker.finishing(1.0, "saved")
    yield RunStage(run, True, _labels(variants), (), time.perf_counter() - t0)


def _labels(variants: list[dict]) -> tuple[str, ...]:
    codec = get_codec("necgs")
    return tuple(codec.setting_label(s) for s in variants)


def _merged(first: EvaluationResult, rest: EvaluationResult) -> EvaluationResult:
    """Two parts of one run on the same shapes: the first's floor, every other row of both."""
    summary = pd.concat([first.summary, rest.summary[rest.summary.codec != "floor"]], ignore_index=True)
    per_shape = pd.concat([first.per_shape, rest.per_shape], ignore_index=True)
    return EvaluationResult(
        first.dataset,
        summary,
        per_shape,
        {**first.statuses, **rest.statuses},
        {**first.decoded, **rest.decoded},
        first.meshes,
        {**first.blobs, **rest.blobs},
    )


def _ordered(
    result: EvaluationResult, name: str, variants: list[dict], pending: list[tuple[str, dict]] | None = None
) -> EvaluationResult:
    """The run's rows in plan order (floor, the NeCGS variants as chosen, the peers), a "pending" row
    for each setting still to compute, and the data set's name on every row."""
    codec = get_codec("necgs")
    summary = result.summary.copy()
    if pending:
        rows = [
            {
                "dataset": name,
                "codec": c,
                "label": get_codec(c).setting_label(s),
                "setting": json.dumps(s, sort_keys=True),
                "status": "pending",
                "n_shapes": len(result.meshes),
                "error": "",
            }
            for c, s in pending
        ]
        summary = pd.concat([summary, pd.DataFrame(rows)], ignore_index=True)
    rank = {label: k for k, label in enumerate(codec.setting_label(s) for s in variants)}
    necgs_rank = summary.label.map(rank).where(summary.codec == "necgs")
    group = np.select([summary.codec == "floor", summary.codec == "necgs"], [0, 1], 2)
    keys = pd.DataFrame({"group": group, "rank": necgs_rank.fillna(0), "pos": np.arange(len(summary))})
    summary = summary.loc[keys.sort_values(["group", "rank", "pos"]).index].reset_index(drop=True)
    summary["dataset"] = name
    per_shape = result.per_shape.copy()
    if len(per_shape):
        per_shape["dataset"] = name
    decoded = dict(sorted(result.decoded.items(), key=lambda kv: (kv[0][0] != "necgs", rank.get(kv[0][1], 0))))
    return replace(result, dataset=name, summary=summary, per_shape=per_shape, decoded=decoded)


def discard_run(run: int) -> None:
    """Remove a run from the registry and its folder (a partial run whose job did not finish)."""
    ResultsStore().delete_run(run)
    shutil.rmtree(run_dir(run), ignore_errors=True)


@dataclass
class FittedVariant:
    """A NeCGS variant's fitted volumes (grid frame) and their meshes (original frame), per shape."""

    volumes: list[np.ndarray] = field(default_factory=list)
    meshes: list[Mesh] = field(default_factory=list)


def add_representation_metrics(
    result: EvaluationResult, variants: list[dict], n_samples: int, tracker: JobProgress | None = None
) -> dict[str, FittedVariant]:
    """Metrics of each variant's fitted volume before compression (``cd_fitted``, ``f1_fitted``).

    The fitted volumes come from the content-keyed fitting cache the run just filled. The
    columns are added to the summary (means) and per-shape rows of NeCGS; the difference to
    ``cd`` is the share of the error that compression adds.
    """
    from necgs.geometry.dmc import mesh_from_volume
    from necgs.geometry.fit import fit_volumes

    codec = get_codec("necgs")
    out: dict[str, FittedVariant] = {}
    labels = {codec.setting_label(s): s for s in variants}
    ok = result.summary[(result.summary.codec == "necgs") & (result.summary.status == "ok")]
    for k, label in enumerate(label for label in labels if label in set(ok.label)):
        try:
            fit_cfg, deform = variant_fit(labels[label])
        except NecgsError:  # the prior went away since it was used: no representation metrics
            continue
        fitted = fit_volumes(result.meshes, fit_cfg, progress=False)
        variant = out[label] = FittedVariant()
        metrics = []
        for vol, transform, gt in zip(fitted.volumes, fitted.transforms, result.meshes):
            grid = mesh_from_volume(vol, gt.name, deform=deform)
            rec = Mesh(transform.invert(grid.vertices), grid.faces, gt.name)
            variant.volumes.append(vol.numpy())
            variant.meshes.append(rec)
            metrics.append(compare_meshes(rec, gt, n_samples))
            if tracker is not None:
                tracker.finishing((k + len(metrics) / len(result.meshes)) / (len(labels) + 1), "representation metrics")
        _merge_fitted(result, label, metrics)
    return out


def variant_fit(setting: dict):
    """(FitConfig, deform) of a NeCGS setting's volumes: the preset's, or for a prior the fit
    ``compress --prior`` does (the prior's frame at :class:`necgs.config.PriorFitConfig`'s budget),
    so the content-keyed cache hands back the volumes the run just fitted."""
    tree = read_setting(setting)
    if tree.prior is not None:
        from necgs.priors.installed import find_prior

        return tree.prior_fit.fit(find_prior(tree.prior), "cpu"), True
    return tree.config.fit, tree.config.deform


def _merge_fitted(result: EvaluationResult, label: str, metrics: list) -> None:
    cds = np.array([m.cd for m in metrics])
    rows = (result.summary.codec == "necgs") & (result.summary.label == label)
    finite = cds[np.isfinite(cds)]
    result.summary.loc[rows, "cd_fitted"] = float(cds.mean()) if np.isfinite(cds).all() else float(np.median(cds))
    result.summary.loc[rows, "f1_fitted"] = float(np.mean([m.f1_005 for m in metrics]))
    result.summary.loc[rows, "cd_fitted_median"] = float(np.median(finite)) if finite.size else float("inf")
    per = result.per_shape
    for gt, m in zip(result.meshes, metrics):
        sel = (per.codec == "necgs") & (per.label == label) & (per["shape"] == gt.name)
        per.loc[sel, "cd_fitted"] = m.cd
        per.loc[sel, "f1_fitted"] = m.f1_005


def save_run_files(
    run: int, result: EvaluationResult, fitted: dict[str, FittedVariant], keep: set[tuple[str, str]] = frozenset()
) -> None:
    """Keep a run's originals, decoded meshes (PLY), NeCGS archives and fitted volumes.

    ``keep``: (codec, label) whose files (and the originals) a partial stage of this run
    already wrote; they are not rewritten, since the page may be reading them.
    """
    base = run_dir(run)
    for m in result.meshes if not keep else []:
        save_mesh(m, base / "original" / f"{_slug(m.name)}.ply")
    index: dict = {"shapes": [m.name for m in result.meshes], "decoded": {}, "archives": {}, "fitted": {}}
    for (codec, label), meshes in result.decoded.items():
        key = f"{codec}::{label}"
        folder = base / "decoded" / _slug(key)
        index["decoded"][key] = folder.name
        if codec == "necgs":
            index["archives"][key] = f"{_slug(label)}.ncgs"
        if (codec, label) in keep:
            continue
        for m, orig in zip(meshes, result.meshes):
            save_mesh(Mesh(m.vertices, m.faces, orig.name), folder / f"{_slug(orig.name)}.ply")
        if codec == "necgs":
            (base / index["archives"][key]).write_bytes(result.blobs[(codec, label)][0])
    for label, variant in fitted.items():
        folder = base / "fitted" / _slug(label)
        index["fitted"][f"necgs::{label}"] = folder.name
        if ("necgs", label) in keep:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for vol, mesh, orig in zip(variant.volumes, variant.meshes, result.meshes):
            np.save(folder / f"{_slug(orig.name)}.npy", vol.astype(np.float32), allow_pickle=False)
            save_mesh(mesh, folder / f"{_slug(orig.name)}.ply")
    tmp = base / "index.json.tmp"
    tmp.write_text(json.dumps(index))
    os.replace(tmp, base / "index.json")  # readers see the old index or the new one


def run_index(run: int) -> dict:
    """Shapes, decoded variants, archives and fitted volumes stored for a run."""
    path = run_dir(run) / "index.json"
    index = json.loads(path.read_text()) if path.is_file() else {}
    return {"shapes": [], "decoded": {}, "archives": {}, "fitted": {}, **index}


def run_config(run: int) -> dict:
    """A stored run's configuration (``necgs`` is always the list of its NeCGS settings)."""
    runs = ResultsStore().list_runs()
    row = runs[runs.id == run]
    if not len(row):
        raise NecgsError(f"no run {run}")
    config = json.loads(row.config.iloc[0])
    if isinstance(config.get("necgs"), dict):  # runs stored before ablations: one setting
        config["necgs"] = [config["necgs"]]
    if isinstance(config.get("codecs"), str):  # benchmark runs stored before run_record: "necgs,draco"
        config["codecs"] = [c for c in config["codecs"].split(",") if c]
    if not config.get("shapes") and not config.get("limit"):
        config["shapes"] = "all"
    return config


def run_exists(run: int) -> bool:
    """Whether the registry holds this run id."""
    runs = ResultsStore().list_runs()
    return bool((runs.id == run).any())


def latest_run(dataset: str | None = None) -> int | None:
    """Id of the newest run (of a data set), if any."""
    runs = ResultsStore().list_runs(dataset)
    return int(runs.id.iloc[0]) if len(runs) else None


# ---------------------------------------------------------------------------- first launch
def cached_initial_run() -> int | None:
    """The stored first-launch run, if it was computed before."""
    runs = ResultsStore().list_runs(DEFAULT_DATASET)
    for row in runs.itertuples():
        cfg = json.loads(row.config)
        if all(cfg.get(k) == v for k, v in INITIAL_CONFIG.items()) and (run_dir(int(row.id)) / "index.json").is_file():
            return int(row.id)
    return None


def ensure_initial_run(progress: Report | None = None) -> int:
    """The cached first-launch run on the default built-in set (computed once)."""
    run = cached_initial_run()
    if run is not None:
        return run
    setting = necgs_settings(
        INITIAL_CONFIG["width"], "quick", PRESETS["quick"].train.use_ssim, True, False, INITIAL_CONFIG["epochs"]
    )
    return execute_run(
        DEFAULT_DATASET,
        ["necgs", *INITIAL_PEERS],
        [setting],
        INITIAL_CONFIG["limit"],
        METRIC_SAMPLES,
        progress=progress,
        config_extra=INITIAL_CONFIG,
    )


@dataclass
class BackgroundRun:
    """The first-launch run computed in a thread while the server already answers.

    Attributes:
        fraction: Done fraction of the job.
        text: What it is doing.
        run: The run id once done.
        error: Why it failed, if it did.
    """

    fraction: float = 0.0
    text: str = "not started"
    run: int | None = None
    error: str = ""
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is still working."""
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> BackgroundRun:
        """Start the computation (returns at once; a cached run is ready immediately)."""
        self.run = cached_initial_run()
        if self.run is not None:
            self.fraction, self.text = 1.0, "ready"
            return self
        self.text = "starting"
        self.thread = threading.Thread(target=self._work, name="necgs-first-launch", daemon=True)
        self.thread.start()
        return self

    def _work(self) -> None:
        def report(fraction: float, text: str) -> None:
            self.fraction, self.text = fraction, text

        try:
            self.run = ensure_initial_run(report)
            self.fraction, self.text = 1.0, "ready"
        except Exception as exc:  # shown on the page; the server keeps serving
            self.error = scrub_paths(f"{type(exc).__name__}: {exc}")


#: The process's first-launch run (started by ``app.py``, read by the page).
INITIAL_RUN = BackgroundRun()


def shipped_summary() -> pd.DataFrame:
    """The latest real benchmark shipped with the project (all 88 AMA bodies against the peers)."""
    from necgs.paths import REPO_ROOT

    return pd.read_csv(REPO_ROOT / SHIPPED_RESULTS / "summary.csv")
