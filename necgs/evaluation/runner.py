"""The rate-distortion runner: every (codec, setting) on one set in one run.

:func:`evaluate` runs every (codec, setting) on one set in one run: encode (timed),
decode (timed), the paper's metrics per shape against the originals, and the rate
(whole output bytes; ratios against the source files and a canonical binary PLY; bits
per vertex). A ``floor`` row (each original against itself, two independent samplings)
always sits beside the results. Unavailable codecs and failing settings are recorded,
never fatal. Where runs are kept: :mod:`necgs.evaluation.runs`; their figures:
:mod:`necgs.evaluation.figures`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from necgs.baselines.base import get_codec
from necgs.errors import Cancelled, NecgsError, stop_if_asked
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import LoadedSet, load_meshes
from necgs.io.mesh import Mesh
from necgs.metrics import MeshMetrics, compare_meshes, mean_metrics, rate_report, sampling_floor

#: progress(stage text, fraction of the whole run done)
RunProgress = Callable[[str, float], None]


@dataclass(frozen=True)
class StageEvent:
    """Where a run is, for progress displays that weight the stages by their cost.

    Attributes:
        index: Position of the (codec, setting) in the run's plan; -1 for the metric floor.
        codec: Codec name ("floor" for the metric floor).
        label: The setting's label.
        phase: "encode", "decode" or "metrics".
        stage: The codec's own stage within the phase (NeCGS encodes through "fit", "train",
            "code"); the phase name when the codec reports none.
        fraction: Done fraction of that stage, in [0, 1].
    """

    index: int
    codec: str
    label: str
    phase: str
    stage: str
    fraction: float


#: on_stage(event): structured progress, beside the plain ``progress`` callback.
StageCallback = Callable[[StageEvent], None]

SUMMARY_COLUMNS = [
    "dataset",
    "codec",
    "label",
    "setting",
    "status",
    "bytes",
    "ratio_files",
    "ratio_ply",
    "bits_per_vertex",
    "cd",
    "nc",
    "f1_005",
    "f1_01",
    "cd_median",
    "empty_shapes",
    "encode_s",
    "decode_ms_per_shape",
    "n_shapes",
    "error",
]


@dataclass
class EvaluationResult:
    """Summary rows (one per codec and setting), per-shape rows, and codec statuses."""

    dataset: str
    summary: pd.DataFrame
    per_shape: pd.DataFrame
    statuses: dict[str, str] = field(default_factory=dict)
    decoded: dict[tuple[str, str], list[Mesh]] = field(default_factory=dict)
    meshes: list[Mesh] = field(default_factory=list)
    blobs: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)


def _load(dataset) -> tuple[str, LoadedSet]:
    if isinstance(dataset, LoadedSet):
        return "custom", dataset
    return str(dataset), load_meshes(resolve_dataset(dataset))


def evaluate(
    dataset,
    codecs: Sequence[str],
    *,
    settings: dict[str, list[dict]] | None = None,
    n_samples: int = 100_000,
    seed: int = 0,
    limit: int | None = None,
    progress: RunProgress | None = None,
    cancel: threading.Event | None = None,
    keep_decoded: bool = False,
    on_stage: StageCallback | None = None,
) -> EvaluationResult:
    """Run the rate-distortion sweep of several codecs on one set.

    Args:
        dataset: A data set name, folder, zip, or a :class:`LoadedSet`.
        codecs: Registry names (``necgs``, ``draco``, ``decimate-draco``...).
        settings: Per codec, the settings to run (default: each codec's sweep).
        n_samples: Surface samples per metric evaluation (paper: 1e5).
        seed: Metric sampling seed.
        limit: Use only the first ``limit`` shapes.
        progress: Callback (stage text, fraction done).
        cancel: Set it to stop: asked before every setting and shape, and by NeCGS at every
            fitting iteration and training step (raises :class:`necgs.errors.Cancelled`,
            within about a second of work).
        keep_decoded: Keep the decoded meshes and blobs (for viewers and downloads).
        on_stage: Structured progress (:class:`StageEvent`), e.g. for a display weighting
            the stages by their cost.

    Returns:
        The :class:`EvaluationResult`.
    """
    name, loaded = _load(dataset)
    meshes = loaded.meshes[:limit] if limit else loaded.meshes
    if not meshes:
        raise NecgsError(f"{dataset}: no usable mesh")
    source_bytes = sum(loaded.source_bytes[: len(meshes)])
    instances = {c: get_codec(c) for c in codecs}
    plan = []
    statuses = {}
    for c, codec in instances.items():
        ok, why = codec.available()
        statuses[c] = "ok" if ok else f"not available: {why}"
        if ok:
            plan += [(c, s) for s in (settings or {}).get(c, codec.sweep())]
    rows, shape_rows = [], []
    result = EvaluationResult(name, pd.DataFrame(), pd.DataFrame(), statuses, meshes=meshes)
    emit = on_stage or (lambda event: None)
    stop = cancel.is_set if cancel is not None else None
    emit(StageEvent(-1, "floor", "", "metrics", "metrics", 0.0))
    floor = [sampling_floor(m, n_samples, seed) for m in meshes]
    emit(StageEvent(-1, "floor", "", "metrics", "metrics", 1.0))
    rows.append(
        _row(name, "floor", "metric floor (original vs itself)", {}, "ok", None, source_bytes, meshes, floor, 0.0, 0.0)
    )
    for k, (c, setting) in enumerate(plan):
        stop_if_asked(stop)
        codec = instances[c]
        label = codec.setting_label(setting)
        step = _stepper(progress, emit, k, len(plan), c, label)
        step("encode", "encode", 0.0, 0.0)
        try:
            t = time.perf_counter()
            blobs = codec.encode(
                meshes, setting, progress=lambda st, f, step=step: step("encode", st, f, 0.7 * f), cancel=stop
            )
            enc = time.perf_counter() - t
            stop_if_asked(stop)
            t = time.perf_counter()
            decoded = codec.decode(
                blobs, setting, progress=lambda st, f, step=step: step("decode", st, f, 0.7 + 0.2 * f), cancel=stop
            )
            dec_ms = 1000 * (time.perf_counter() - t) / len(meshes)
            step("metrics", "metrics", 0.0, 0.9)
            per = []
            for r, g in zip(decoded, meshes):
                stop_if_asked(stop)
                per.append(compare_meshes(r, g, n_samples, seed))
            step("metrics", "metrics", 1.0, 1.0)
        except Cancelled:
            raise
        except Exception as exc:  # a failing setting is recorded, the run goes on
            rows.append(
                _row(
                    name,
                    c,
                    label,
                    setting,
                    "error",
                    None,
                    source_bytes,
                    meshes,
                    None,
                    0,
                    0,
                    error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                )
            )
            continue
        total = sum(len(b) for b in blobs)
        rows.append(_row(name, c, label, setting, "ok", total, source_bytes, meshes, per, enc, dec_ms))
        for m, metric, fl in zip(meshes, per, floor):
            shape_rows.append(
                {"dataset": name, "codec": c, "label": label, "shape": m.name, **metric.to_dict(), "floor_cd": fl.cd}
            )
        if keep_decoded:
            result.decoded[(c, label)] = decoded
            result.blobs[(c, label)] = blobs
    result.summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    result.per_shape = pd.DataFrame(shape_rows)
    if progress:
        progress("done", 1.0)
    return result


def _stepper(progress: RunProgress | None, emit: StageCallback, k: int, n_plan: int, codec: str, label: str):
    """step(phase, stage text, stage fraction, fraction of this setting) -> both callbacks."""

    def step(phase: str, stage: str, frac: float, setting_frac: float) -> None:
        words = str(stage).split()
        emit(StageEvent(k, codec, label, phase, words[0] if words else phase, min(max(float(frac), 0.0), 1.0)))
        if progress is not None:
            progress(f"{codec} [{label}] {stage}", (k + min(max(setting_frac, 0.0), 1.0)) / max(n_plan, 1))

    return step


def _row(
    dataset,
    codec,
    label,
    setting,
    status,
    total,
    source_bytes,
    meshes,
    per: list[MeshMetrics] | None,
    enc,
    dec_ms,
    error="",
) -> dict:
    """One summary row; ``per`` holds the per-shape metrics (mean CD is inf if any shape decoded empty,
    so the row also carries the median CD and the count of shapes without a surface)."""
    row = {
        "dataset": dataset,
        "codec": codec,
        "label": label,
        "setting": json.dumps(setting, sort_keys=True),
        "status": status,
        "error": error,
        "n_shapes": len(meshes),
        "encode_s": enc,
        "decode_ms_per_shape": dec_ms,
    }
    if total:
        r = rate_report(total, source_bytes, meshes)
        row.update(
            bytes=r.compressed_bytes,
            ratio_files=r.ratio_files,
            ratio_ply=r.ratio_ply,
            bits_per_vertex=r.bits_per_vertex,
        )
    elif codec == "floor":
        r = rate_report(1, source_bytes, meshes)
        row.update(bytes=r.ply_bytes, ratio_files=source_bytes / r.ply_bytes, ratio_ply=1.0, bits_per_vertex=96.0)
    if per is not None:
        cds = np.array([m.cd for m in per], dtype=np.float64)
        row.update(
            mean_metrics(per).to_dict(), cd_median=float(np.median(cds)), empty_shapes=int((~np.isfinite(cds)).sum())
        )
    return row
