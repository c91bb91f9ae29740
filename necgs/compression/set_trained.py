"""Compressing a set with a decoder trained on it: fit the volumes, train, code, check for empty shapes.

With a target ratio or size, rate control (:mod:`necgs.target_rate`) picks the decoder's
width, bits and lambda_R, and a second setting is trained once when the first misses.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from necgs import target_rate
from necgs.coding.codec_archive import shape_record, write_codec_archive
from necgs.compression.decode import shapes_without_surface
from necgs.compression.steps import CompressResult, StageProgress, emit
from necgs.config import NecgsConfig
from necgs.geometry.fit import FittedSet, fit_volumes
from necgs.io.loading import LoadedSet
from necgs.paths import cache_dir
from necgs.training.features import repair_empty_shapes
from necgs.training.train import TrainedCodec, train_autodecoder


@dataclass(frozen=True)
class RateTarget:
    """What rate control aims at: a ratio of the meshes as binary PLY to the archive, or an archive size.

    Attributes:
        ratio: Wanted ratio (exclusive with ``bytes``).
        bytes: Wanted archive size in bytes.
    """

    ratio: float | None = None
    bytes: int | None = None


def compress_set_trained(
    loaded: LoadedSet,
    output: str | os.PathLike,
    cfg: NecgsConfig,
    *,
    progress: StageProgress | None = None,
    cancel: Callable[[], bool] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    target: RateTarget | None = None,
) -> CompressResult:
    """Train a decoder on ``loaded``'s meshes and write the archive.

    Args:
        loaded: The meshes (at least one).
        output: The archive path (written atomically).
        cfg: Validated settings; with ``target``, rate control replaces the width, bits and lambda_R.
        progress: Stage callback; ``None`` shows tqdm bars.
        cancel: Polled at every fitting iteration and training step; True stops with Cancelled.
        checkpoint_dir: Training checkpoints (default: a cache folder keyed by the output's name).
        target: Rate control's aim, if any.

    Returns:
        The :class:`CompressResult`.
    """
    plan = None
    if target is not None:
        plan = target_rate.plan_rate(cfg, loaded.meshes, target_ratio=target.ratio, target_bytes=target.bytes)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    fit_cb = (lambda d, n: emit(progress, "fit", d, n)) if progress else True
    fitted = fit_volumes(loaded.meshes, cfg.fit, progress=fit_cb, cancel=cancel)
    seconds["fit"] = time.perf_counter() - t
    ckpt = Path(checkpoint_dir) if checkpoint_dir else cache_dir("checkpoints", Path(output).stem)
    run = _TrainRun(loaded, fitted, ckpt, progress, cancel, seconds)
    size, resumed, notes = run.write(plan.config if plan else cfg, output)
    if plan is not None:
        plan, size, notes = run.second_pass(cfg, plan, size, notes, output)
    t = time.perf_counter()
    final_cfg = plan.config if plan else cfg
    empty = shapes_without_surface(output, device=final_cfg.train.device)
    seconds["check"] = time.perf_counter() - t
    return CompressResult.of(
        loaded, output, size, seconds, resumed_from_epoch=resumed, empty_shapes=empty, rate_plan=plan, notes=notes
    )


def write_trained(output: str | os.PathLike, cfg: NecgsConfig, codec: TrainedCodec, shapes: list[dict]) -> int:
    """Write a trained codec with its settings as a format 1.2 archive; returns its size.

    The single-process and the distributed paths both end here.
    """
    return write_codec_archive(output, cfg.to_dict(), codec, shapes)


@dataclass
class _TrainRun:
    """Training and coding of one fitted set, once or (rate control's second pass) twice."""

    loaded: LoadedSet
    fitted: FittedSet
    checkpoint_dir: Path
    progress: StageProgress | None
    cancel: Callable[[], bool] | None
    seconds: dict[str, float]

    def write(self, cfg: NecgsConfig, output: str | os.PathLike) -> tuple[int, int, list[str]]:
        """Train with ``cfg`` and write the archive; returns (bytes, resumed epoch, notes)."""
        t = time.perf_counter()
        train_cb = (
            (lambda e, n, loss, eta: emit(self.progress, "train", e, n, f"loss {loss:.4f}, ETA {eta:.0f} s"))
            if self.progress
            else True
        )
        codec = train_autodecoder(
            self.fitted.volumes,
            cfg.decoder(),
            cfg.train,
            checkpoint_dir=self.checkpoint_dir,
            progress=train_cb,
            cancel=self.cancel,
            autoencoder=cfg.autoencoder,
            deform=cfg.deform,
        )
        notes = []
        if not cfg.autoencoder:
            codec, repaired = repair_empty_shapes(codec, self.fitted.volumes, cfg.train, deform=cfg.deform)
            if repaired:
                names = [self.loaded.meshes[i].name for i in repaired]
                notes.append(
                    f"refitted the features of {len(repaired)} shapes that decoded to no surface: "
                    + ", ".join(names[:5])
                    + (", ..." if len(names) > 5 else "")
                )
        self.seconds["train"] = self.seconds.get("train", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        emit(self.progress, "code", 0, 1)
        shapes = [
            shape_record(m, tr, b, batch=0)
            for m, tr, b in zip(self.loaded.meshes, self.fitted.transforms, self.loaded.source_bytes)
        ]
        size = write_trained(output, cfg, codec, shapes)
        self.seconds["code"] = self.seconds.get("code", 0.0) + time.perf_counter() - t
        emit(self.progress, "code", 1, 1)
        return size, codec.resumed_from, notes

    def second_pass(
        self, base: NecgsConfig, plan: target_rate.RatePlan, size: int, notes: list[str], output: str | os.PathLike
    ) -> tuple[target_rate.RatePlan, int, list[str]]:
        """Rate control's short search: if the archive missed its target, train the setting
        :func:`~necgs.target_rate.replan` names and keep whichever archive lands nearer.

        Args:
            base: The configuration rate control started from.
            plan: The first plan; its archive of ``size`` bytes is at ``output``.
            size: The first archive's bytes.
            notes: The first archive's notes.
            output: The archive path.

        Returns:
            (the plan of the archive kept at ``output``, its bytes, its notes).
        """
        second = target_rate.replan(plan, size, base, self.loaded.meshes)
        if second is None:
            return plan, size, notes
        ply = plan.ply_bytes
        trial = Path(output).with_name(Path(output).name + ".second-pass")
        try:
            trial_size, _, trial_notes = self.write(second.config, trial)
            first = f"ratio {ply / size:.1f} with width {plan.point.width} at {plan.point.bits} bits"
            if second.miss(trial_size) < plan.miss(size):
                os.replace(trial, output)
                note = f"rate control: the first setting missed the target ({first}); trained a second one"
                return second, trial_size, [*trial_notes, note]
        finally:
            trial.unlink(missing_ok=True)
        note = (
            f"rate control: the first setting missed the target ({first}); a second one "
            f"(width {second.point.width} at {second.point.bits} bits) landed farther, ratio {ply / trial_size:.1f}, "
            "so the first archive was kept"
        )
        return plan, size, [*notes, note]
