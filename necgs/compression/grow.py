"""Growing an archive (``necgs add``): new shapes get features fitted against its frozen decoder.

Old shapes keep their sections byte for byte, so they decode bit-identically.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from necgs.coding.codec_archive import shape_record, write_grown_archive
from necgs.compression.decode import OpenedArchive, open_archive
from necgs.compression.steps import CompressResult, Source, StageProgress, as_loaded, config_from_metadata, emit
from necgs.config import FitConfig, PriorFitConfig, TrainConfig
from necgs.errors import NecgsError
from necgs.geometry.fit import fit_volumes
from necgs.priors.installed import PriorSpec
from necgs.priors.start import start_features
from necgs.training.features import fit_features
from necgs.training.train import TrainedCodec


def add_shapes(
    archive: str | os.PathLike,
    source: Source,
    output: str | os.PathLike,
    *,
    epochs: int | None = None,
    progress: StageProgress | None = None,
    prior: PriorSpec | None = None,
) -> CompressResult:
    """Add new shapes to an archive, optimizing only their features (frozen decoder).

    Old shapes keep their sections byte for byte, so they decode bit-identically.

    Args:
        archive: The existing archive.
        source: New meshes (folder, zip, files, list of Mesh).
        output: The grown archive (may equal ``archive``; written atomically).
        epochs: Feature-fitting epochs (default: the archive's training epochs).
        progress: Stage callback.
        prior: The prior of an archive compressed against one (default: the installed one).

    Returns:
        The :class:`CompressResult` of the grown archive (names of all shapes).
    """
    with open_archive(archive, prior=prior) as arc:
        if arc.has_delta:
            raise NecgsError(
                f"{arc.reader.name}: shapes cannot be added to an archive with a fine-tuned decoder delta; "
                "compress the whole set again"
            )
        fit_cfg, train_cfg, coder = growing_settings(arc)
        loaded = as_loaded(source)
        if not loaded.meshes:
            raise NecgsError(f"{source}: no usable mesh to add")
        clash = sorted({s["name"] for s in arc.shapes} & {m.name for m in loaded.meshes})
        if clash:
            raise NecgsError(f"{archive}: shape names already in the archive: {', '.join(clash[:5])}")
        used_prior = arc.prior()
        codec_old = TrainedCodec(arc.decoder_cfg, arc.weights(), arc.initial_features())
        old = arc.contents()
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    fitted = fit_volumes(
        loaded.meshes, fit_cfg, progress=(lambda d, n: emit(progress, "fit", d, n)) if progress else True
    )
    seconds["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    new_features = fit_features(
        codec_old,
        fitted.volumes,
        train_cfg if epochs is None else replace(train_cfg, epochs=epochs),
        init=start_features(used_prior, fitted.volumes, codec_old.decoder()) if used_prior is not None else None,
        progress=(lambda e, n, loss, eta: emit(progress, "train", e, n, f"loss {loss:.4f}")) if progress else False,
        deform=arc.deform,
    )
    seconds["train"] = time.perf_counter() - t
    records = [
        shape_record(m, tr, b, old.next_batch)
        for m, tr, b in zip(loaded.meshes, fitted.transforms, loaded.source_bytes)
    ]
    shared = used_prior.feature_model if used_prior is not None else None
    size = write_grown_archive(output, old, records, new_features, coder, shared)
    names = [s["name"] for s in [*old.shapes, *records]]
    return CompressResult(Path(output), size, names, [str(f) for f in loaded.failures], seconds)


def growing_settings(arc: OpenedArchive) -> tuple[FitConfig, TrainConfig, str]:
    """How new shapes of ``arc`` are fitted: (fitting, feature-fitting, coder).

    An archive against a prior takes the prior's frame and the feature-fitting budget of
    ``compress --prior``; any other takes the settings it stored.
    """
    used_prior = arc.prior()
    if used_prior is not None:
        budget = PriorFitConfig()
        return (
            used_prior.fit_config(budget),
            used_prior.train_config(budget),
            str(arc.metadata["config"].get("coder", "auto")),
        )
    cfg = config_from_metadata(arc.metadata["config"])
    return cfg.fit, cfg.train, cfg.coder
