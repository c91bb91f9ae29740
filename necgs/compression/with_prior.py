"""Compressing against a prior: only each shape's feature (and optionally a decoder delta) is fitted and stored.

The archive names the prior by id (:func:`necgs.coding.codec_archive.write_prior_archive`);
``notes`` warns when the prior fits the shapes badly.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np

from necgs.coding.codec_archive import shape_record, write_prior_archive
from necgs.compression.steps import CompressResult, StageProgress, emit
from necgs.config import NecgsConfig, PriorFitConfig
from necgs.errors import StopCheck
from necgs.geometry.block_volume import Volumes
from necgs.geometry.fit import fit_volumes
from necgs.io.loading import LoadedSet
from necgs.model.decoder import Decoder
from necgs.model.quant import QuantizedTensor
from necgs.priors.prior import Prior
from necgs.priors.start import start_features
from necgs.training.features import band_errors, fit_features
from necgs.training.fine_tune import apply_delta, fine_tune_decoder

#: Median band error (mean |TSDF error| where |TSDF| < 1) above which a prior is said to fit badly,
#: whatever its own: well above what a prior measures on shapes it fits well (measurements:
#: docs/ARCHITECTURE.md, "Priors", "Out of domain").
BAND_ERROR_LIMIT = 0.2


def compress_with_prior(
    loaded: LoadedSet,
    output: str | os.PathLike,
    prior: Prior,
    fit: PriorFitConfig | None,
    cfg: NecgsConfig,
    progress: StageProgress | None = None,
    cancel: StopCheck | None = None,
) -> CompressResult:
    """Compress meshes against a frozen prior: their features (and optionally a decoder delta) are stored.

    With ``fit.fine_tune_steps`` the prior's weights are fine-tuned on the shapes after the
    features are fitted, and the archive stores the coded change (:mod:`necgs.training.fine_tune`).

    Args:
        loaded: The meshes (at least one; one mesh is fine).
        output: The archive path.
        prior: The pretrained decoder.
        fit: Fitting budget (default :class:`PriorFitConfig`).
        cfg: Only its device and coder are used.
        progress: Stage callback.
        cancel: Polled at every fitting iteration and training step; True stops with Cancelled.

    Returns:
        The :class:`CompressResult`; ``notes`` warns when the prior fits the shapes badly: their
        median band error is over twice the prior's own or over :data:`BAND_ERROR_LIMIT`, or a
        shape decodes to no surface.
    """
    fit = fit or PriorFitConfig()
    device = cfg.train.device
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    fit_cb = (lambda d, n: emit(progress, "fit", d, n)) if progress else True
    fitted = fit_volumes(loaded.meshes, prior.fit_config(fit, device), progress=fit_cb, cancel=cancel)
    seconds["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    features, delta, decoder = fit_to_prior(prior, fitted.volumes, fit, device, progress, cancel)
    seconds["train"] = time.perf_counter() - t
    t = time.perf_counter()
    shapes = [
        shape_record(m, tr, b, batch=0) for m, tr, b in zip(loaded.meshes, fitted.transforms, loaded.source_bytes)
    ]
    size = write_prior_archive(output, prior, features, shapes, seconds["train"], cfg.coder, delta)
    seconds["code"] = time.perf_counter() - t
    t = time.perf_counter()
    errors, empty_at = band_errors(decoder, features.value(), fitted.volumes)
    empty = [loaded.meshes[i].name for i in empty_at]
    seconds["check"] = time.perf_counter() - t
    note = prior_fit_note(prior, errors, len(empty))
    prior_info = {"name": prior.name, "id": prior.id}
    return CompressResult.of(
        loaded, output, size, seconds, empty_shapes=empty, prior=prior_info, notes=[note] if note else []
    )


def fit_to_prior(
    prior: Prior,
    volumes: Volumes,
    fit: PriorFitConfig,
    device: str,
    progress: StageProgress | None,
    cancel: StopCheck | None = None,
) -> tuple[QuantizedTensor, dict[str, QuantizedTensor] | None, Decoder]:
    """Fit the features of new shapes against ``prior``, then fine-tune its decoder if ``fit`` asks.

    Args:
        prior: The pretrained decoder.
        volumes: (M, 4, K, K, K) volumes of the new shapes, in the prior's frame (dense or as blocks).
        fit: Fitting budget and fine-tuning settings.
        device: "auto", "cpu" or "cuda".
        progress: Stage callback (stage "train": feature visits, then fine-tuning steps).
        cancel: Polled at every step; True stops with Cancelled.

    Returns:
        (the quantized (M, C, K', K', K') features, the decoder delta or None, the decoder they decode with).
    """
    tcfg = prior.train_config(fit, device)
    codec = prior.codec()
    decoder = codec.decoder()
    units = tcfg.epochs + fit.fine_tune_steps  # the train stage: feature visits, then fine-tuning steps
    features = fit_features(
        codec,
        volumes,
        tcfg,
        progress=(lambda e, n, loss, eta: emit(progress, "train", e, units, f"loss {loss:.4f}")) if progress else False,
        init=start_features(prior, volumes, decoder),
        cancel=cancel,
    )
    if not fit.fine_tune_steps:
        return features, None, decoder
    delta, features = fine_tune_decoder(
        codec,
        volumes,
        features,
        replace(tcfg, blocks_per_shape=fit.fine_tune_blocks, band_fraction=fit.fine_tune_band_fraction),
        fit.fine_tune_steps,
        fit.fine_tune_lr,
        fit.delta_multiple,
        fit.delta_bits,
        progress=(
            (lambda k, n, loss: emit(progress, "train", tcfg.epochs + k, units, f"fine-tune loss {loss:.4f}"))
            if progress
            else None
        ),
        cosine=fit.fine_tune_cosine,
        lambda_rate=fit.fine_tune_lambda_rate,
        cancel=cancel,
    )
    return features, delta, apply_delta(decoder, delta)


def prior_fit_note(prior: Prior, errors: np.ndarray, n_empty: int) -> str | None:
    """A warning when ``prior`` fits new shapes badly, else None.

    Badly: their median band error is over twice the prior's own median, or over
    :data:`BAND_ERROR_LIMIT` whatever the prior's own, or a shape decodes to no surface.

    Args:
        prior: The prior.
        errors: (M,) band errors of the new shapes (:func:`necgs.training.train.band_errors`).
        n_empty: How many of them decode to no surface.
    """
    reference = float(prior.card.get("band_error_median") or BAND_ERROR_LIMIT)
    median = float(np.median(errors)) if len(errors) else 0.0
    if median <= min(2 * reference, BAND_ERROR_LIMIT) and not n_empty:
        return None
    return (
        f"prior {prior.name!r} fits these shapes badly (median band error {median:.3f}, {reference:.3f} on its "
        f"training shapes; {n_empty} without surface): a decoder trained on the set may do better; "
        f"try --prior auto or no prior"
    )
