"""Running a job: NeCGS (one or several variants) beside the chosen peers, stored as one run.

A run evaluates every setting on one set of shapes in one job and keeps, in the run store
(:mod:`necgs.evaluation.runs`), its metrics and its files: the originals, every decoded mesh,
each NeCGS archive, and for each NeCGS variant the fitted TSDF-Def volumes before compression
with their own mesh (so the page can separate the error of the representation from that of
compression).

A prior variant (:func:`necgs.webapp.decoders.is_prior`) takes seconds, so when slower work
follows, it runs first and the run is stored as "partial" (:func:`run_stages`), which the page
shows at once; the rest then replaces it. A job given a live feed (:mod:`necgs.webapp.live`)
also shows each shape against the prior as soon as its volume is ready, and every training's
loss and one shape decoded with the weights so far while it trains.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from necgs.baselines.base import get_codec
from necgs.errors import NecgsError, StopCheck, stop_if_asked
from necgs.evaluation.runner import EvaluationResult, StageEvent, evaluate
from necgs.evaluation.runs import FittedVariant, RunStore, run_record
from necgs.geometry.dmc import mesh_from_volume  # torch: loaded on first use, so the page starts fast
from necgs.geometry.fit import fit_volumes
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import LoadedSet, load_meshes
from necgs.io.mesh import Mesh
from necgs.metrics import compare_meshes
from necgs.priors.installed import find_prior
from necgs.settings import read_setting
from necgs.training.watch import watching
from necgs.webapp.decoders import is_prior
from necgs.webapp.live import LiveFeed, LiveWatch, VariantFrame, preview_prior
from necgs.webapp.progress import JobProgress, Report

#: Surface samples per metric in the app's runs: the paper's and the benchmarks' 1e5, so that the metric
#: floor (and every codec near it) reads as in the shipped benchmark; fewer samples raise the floor's CD
#: and lower its F1 until codecs near it look alike (measurements: docs/ARCHITECTURE.md, "The app").
METRIC_SAMPLES = 100_000


def peer_settings(codecs: list[str]) -> dict[str, list[dict]]:
    """Each peer's sweep, thinned to about six settings."""
    settings = {}
    for c in codecs:
        sweep = get_codec(c).sweep()
        settings[c] = sweep if len(sweep) <= 8 else sweep[:: max(len(sweep) // 6, 1)]
    return settings


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
    owner: str | None = None,
) -> int:
    """Evaluate NeCGS (each variant) and the peers in one job, store it, keep its files; returns the run id.

    The arguments are :func:`run_stages`'; this waits for the last stage.
    """
    *_, last = run_stages(dataset, codecs, variants, limit, n_samples, progress, cancel, config_extra, owner)
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
    owner: str | None = None,
    live: LiveFeed | None = None,
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
        cancel: Set to stop (within about a second of work); a cancelled job stores nothing.
        config_extra: More to record in the run's configuration (e.g. the ablation factor).
        owner: Who may see the run in the app (:meth:`RunStore.create`).
        live: Where to show shapes while the job computes: with a prior, each shape from the
            prior's start feature as soon as its volume is fitted (:func:`preview_prior`, before
            anything else); while a decoder trains or features are fitted, the loss and one
            shape decoded so far (:class:`LiveWatch`). The stored run is the same with or without.

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
    preview = quick[0] if live is not None and quick else None
    tracker = JobProgress.for_run(codecs, order, len(loaded.meshes), progress or (lambda f, t: None), preview)
    config = {
        **run_record(name, codecs, variants, len(loaded.meshes), limit=limit, samples=n_samples),
        **(config_extra or {}),
    }
    store = RunStore()
    stop = cancel.is_set if cancel is not None else None
    watch = None
    if live is not None:
        watch = LiveWatch(live, loaded.meshes, {_labels([v])[0]: VariantFrame(*variant_fit(v)) for v in variants})
        if preview is not None:
            preview_prior(live, loaded.meshes, preview, stop, tracker.previewing)

    def run_part(part_codecs: list[str], settings: dict, offset: int, last: bool) -> tuple[EvaluationResult, dict]:
        def on_stage(event: StageEvent) -> None:
            tracker.on_stage(event if event.index < 0 else replace(event, index=event.index + offset))
            if watch is not None:
                watch.on_stage(event)

        with watching(watch):
            result = evaluate(
                loaded,
                part_codecs,
                settings=settings,
                n_samples=n_samples,
                cancel=cancel,
                keep_decoded=True,
                on_stage=on_stage,
            )
        fitted = add_representation_metrics(
            result, settings.get("necgs", []), n_samples, tracker if last else None, stop
        )
        stop_if_asked(stop)  # a job cancelled now stores nothing
        return result, fitted

    if not split:
        result, fitted = run_part(codecs, {**({"necgs": variants} if "necgs" in codecs else {}), **peers}, 0, True)
        result = _ordered(result, name, variants)
        run = store.create(result, config, owner=owner)
        store.save_files(run, result, fitted)
        tracker.finishing(1.0, "saved")
        yield RunStage(run, True, _labels(variants), (), time.perf_counter() - t0)
        return
    first, fitted = run_part(["necgs"], {"necgs": quick}, 0, False)
    rest_codecs = [c for c in codecs if c != "necgs" or slow]
    pending = [("necgs", s) for s in slow] + [(c, s) for c, sweep in peers.items() for s in sweep]
    partial = _ordered(first, name, variants, pending)
    run = store.create(partial, config, status="partial", owner=owner)
    try:
        store.save_files(run, partial, fitted)
        yield RunStage(
            run,
            False,
            _labels(quick),
            tuple((c, get_codec(c).setting_label(s)) for c, s in pending),
            time.perf_counter() - t0,
        )
        rest, fitted_rest = run_part(rest_codecs, {**({"necgs": slow} if slow else {}), **peers}, len(quick), True)
        result = _ordered(_merged(first, rest), name, variants)
        store.save_results(run, result)
        store.save_files(run, result, {**fitted, **fitted_rest}, keep=set(partial.decoded))
    except BaseException:
        store.discard(run)
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


def add_representation_metrics(
    result: EvaluationResult,
    variants: list[dict],
    n_samples: int,
    tracker: JobProgress | None = None,
    cancel: StopCheck | None = None,
) -> dict[str, FittedVariant]:
    """Metrics of each variant's fitted volume before compression (``cd_fitted``, ``f1_fitted``).

    The fitted volumes come from the content-keyed fitting cache the run just filled. The
    columns are added to the summary (means) and per-shape rows of NeCGS; the difference to
    ``cd`` is the share of the error that compression adds. ``cancel`` is asked before each
    shape (and by the fitting); True stops with :class:`necgs.errors.Cancelled`.
    """

    codec = get_codec("necgs")
    out: dict[str, FittedVariant] = {}
    labels = {codec.setting_label(s): s for s in variants}
    ok = result.summary[(result.summary.codec == "necgs") & (result.summary.status == "ok")]
    for k, label in enumerate(label for label in labels if label in set(ok.label)):
        try:
            fit_cfg, deform = variant_fit(labels[label])
        except NecgsError:  # the prior went away since it was used: no representation metrics
            continue
        fitted = fit_volumes(result.meshes, fit_cfg, progress=False, cancel=cancel)
        variant = out[label] = FittedVariant()
        metrics = []
        for vol, transform, gt in zip(fitted.volumes, fitted.transforms, result.meshes):
            stop_if_asked(cancel)
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
        return find_prior(tree.prior).fit_config(tree.prior_fit, "cpu"), True
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
