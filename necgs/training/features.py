"""Fitting shapes' features against a frozen decoder, and finding and repairing shapes that
decode to no surface (``necgs add``, priors, and the check after every compression).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import torch

from necgs.config import TrainConfig
from necgs.device import resolve_device
from necgs.errors import StopCheck, stop_if_asked
from necgs.geometry.block_volume import Volumes, as_volume_set
from necgs.model.blocks import decode_volume
from necgs.model.decoder import Decoder
from necgs.model.quant import QuantizedTensor, quantize, to_symbols
from necgs.optim import Adam
from necgs.training.patches import coarse_targets, tsdf_of

#: progress(epoch_done, epochs, mean_loss, eta_seconds)
from necgs.training.train import StepObjective, TrainedCodec, TrainProgress, lr_at
from necgs.training.watch import Snapshot, Watch, current_watch, watching


def fit_features(
    codec: TrainedCodec,
    volumes: Volumes,
    tcfg: TrainConfig,
    progress: TrainProgress | bool = False,
    init: torch.Tensor | None = None,
    cancel: StopCheck | None = None,
    watch: Watch | None = None,
    deform: bool = True,
) -> QuantizedTensor:
    """Optimize features of NEW shapes against the frozen quantized decoder.

    The new features are quantized on the codec's existing feature grid, so old shapes
    and their symbols are untouched.

    Args:
        codec: The trained codec (its decoder is frozen).
        volumes: (M, 4, K, K, K) volumes of the new shapes (dense or as blocks).
        tcfg: Training settings (epochs, lr, loss weights).
        progress: As in :func:`train_autodecoder`.
        init: (M, C, K', K', K') starting features; default: the mean of the codec's features.
        cancel: Called before every step; True stops with :class:`necgs.errors.Cancelled`.
        watch: Called after every epoch (visit) with a :class:`necgs.training.watch.Snapshot`;
            None: the one installed by :func:`necgs.training.watch.watching`, if any.
        deform: Whether the archive decodes with the deformation channels (as in
            :func:`necgs.training.train.train_autodecoder`).

    Returns:
        The new shapes' quantized features, shape (M, C, K', K', K').
    """
    tcfg.validate()
    device = resolve_device(tcfg.device)
    decoder = codec.decoder(device)
    for p in decoder.parameters():
        p.requires_grad_(False)
    spec = codec.features.spec
    m = volumes.shape[0]
    cfg = codec.decoder_cfg
    kp = cfg.feature_resolution
    if init is None:
        init = codec.features.value().mean(0, keepdim=True).expand(m, -1, -1, -1, -1)
    features = torch.nn.Parameter(init.clone().to(device))
    opt = Adam([{"params": [features], "lr": tcfg.lr * tcfg.feature_lr_scale}])
    steps = max(math.ceil(m / tcfg.batch_size), 1)
    total = steps * tcfg.epochs
    objective = StepObjective(volumes, cfg, tcfg, deform)
    watch = watch or current_watch()
    t0 = time.perf_counter()
    for epoch in range(tcfg.epochs):
        order = torch.randperm(m, generator=torch.Generator().manual_seed(tcfg.seed + epoch))
        crops = torch.Generator().manual_seed(tcfg.seed * 100_019 + epoch)
        epoch_loss = 0.0
        for s in range(steps):
            stop_if_asked(cancel)
            idx = order[s * tcfg.batch_size : (s + 1) * tcfg.batch_size].tolist()
            opt.param_groups[0]["lr"] = lr_at(epoch * steps + s, total, tcfg) * tcfg.feature_lr_scale
            loss = objective(decoder, quantize(features[idx], spec), None, idx, crops)
            opt.zero_grad()
            loss.backward()
            opt.step()
            epoch_loss += float(loss.detach())
        if callable(progress):
            done = epoch + 1
            progress(done, tcfg.epochs, epoch_loss / steps, (time.perf_counter() - t0) / done * (tcfg.epochs - done))
        if watch is not None:
            watch(
                Snapshot(
                    "features",
                    epoch + 1,
                    tcfg.epochs,
                    epoch_loss / steps,
                    time.perf_counter() - t0,
                    m,
                    lambda i: decoder(quantize(features[i : i + 1], spec))[0],
                )
            )
    f = features.detach().cpu()
    return QuantizedTensor(to_symbols(f, spec), spec, (m, cfg.feature_channels, kp, kp, kp))


def has_surface(tsdf: torch.Tensor) -> bool:
    """Whether a decoded TSDF (K, K, K) changes sign anywhere, i.e. holds a surface."""
    return bool((tsdf < 0).any()) and bool((tsdf > 0).any())


def decodes_to_surface(decoder: Decoder, feature: torch.Tensor) -> bool:
    """Whether one shape's feature (C, K', K', K') decodes to a surface, decoded as the archive's
    decode does it (:func:`necgs.model.blocks.decode_volume`: block-sparse from K = 128 on, dense
    where the sparse decode is empty), so the check costs an eighth of a dense decode per shape at
    K = 128 (0.25 s against 2.1 s on one core)."""
    return has_surface(decode_volume(decoder, feature[None])[0, 0])


def shapes_without_surface_in(codec: TrainedCodec, device: str | torch.device = "cpu") -> list[int]:
    """Indices of the codec's shapes whose decoded TSDF never changes sign (no surface)."""
    decoder = codec.decoder(device)
    features = codec.features.value()
    return [i for i in range(features.shape[0]) if not decodes_to_surface(decoder, features[i].to(device))]


def repair_empty_shapes(
    codec: TrainedCodec,
    volumes: Volumes,
    tcfg: TrainConfig,
    visits: int = 200,
    starts: int = 4,
    deform: bool = True,
) -> tuple[TrainedCodec, list[int]]:
    """Refit the features of shapes that decode to no surface, against the frozen decoder.

    A shape whose feature the training left where the decoder says "outside" everywhere would
    decode to nothing. Its feature is restarted from the features of the ``starts`` shapes whose
    volumes are nearest (L1 of the average-pooled TSDF at K/4) among those that decode; each
    start is fitted against the trained, quantized decoder (:func:`fit_features`, all starts of
    all empty shapes in one run), on the same feature grid, and the shape keeps the fit that
    decodes to a surface with the lowest band error (several starts, because a single one can
    stay empty: docs/ARCHITECTURE.md, 'Decisions and why', "Collapse is detected, not hidden").

    Args:
        codec: The trained codec.
        volumes: (N, 4, K, K, K) its shapes' volumes (dense or as blocks).
        tcfg: The training settings (loss, blocks, lr).
        visits: Feature updates per start.
        starts: Starting features tried per shape.
        deform: As in :func:`fit_features`.

    Returns:
        The codec with the repaired features, and the indices that were repaired (they may
        still be empty; the archive check reports that).
    """
    device = resolve_device(tcfg.device)
    empty = shapes_without_surface_in(codec, device)
    good = [i for i in range(volumes.shape[0]) if i not in empty]
    if not empty or not good:
        return codec, []
    pooled = coarse_targets(volumes, max(volumes.shape[-1] // 4, 1)).flatten(1)
    distance = (pooled[empty][:, None] - pooled[good][None]).abs().mean(-1)  # (E, G)
    k = min(starts, len(good))
    nearest = distance.argsort(1)[:, :k]  # (E, k) positions in ``good``
    start = codec.features.value()[[good[int(j)] for j in nearest.flatten()]]
    targets = as_volume_set(volumes).subset([i for i in empty for _ in range(k)])  # shared blocks, no copies
    with watching(None):  # a watcher follows the set's shapes, not these extra starts
        fits = fit_features(codec, targets, replace(tcfg, epochs=visits, checkpoint_every=0), init=start, deform=deform)
    chosen = best_starts(codec.decoder(device), fits.value().to(device), targets, k)
    per = int(np.prod(codec.features.shape[1:]))
    symbols = codec.features.symbols.copy().reshape(-1, per)
    symbols[empty] = fits.symbols.reshape(-1, per)[chosen]
    features = QuantizedTensor(symbols.reshape(-1), codec.features.spec, codec.features.shape)
    return replace(codec, features=features), empty


@torch.no_grad()
def band_errors(decoder: Decoder, features: torch.Tensor, volumes: Volumes) -> tuple[np.ndarray, list[int]]:
    """Per shape, the mean absolute TSDF error of the decode on the band |TSDF| < 1, from one decode.

    Args:
        decoder: The decoder (inference).
        features: (N, C, K', K', K') features.
        volumes: (N, 4, K, K, K) target volumes (dense or as blocks).

    Returns:
        (N,) errors in TSDF units (what tells a shape the prior knows from one it does not),
        and the indices of the shapes whose decode holds no surface.
    """
    out, empty = [], []
    for i in range(features.shape[0]):
        pred = decoder(features[i : i + 1])[0, 0]
        target = tsdf_of(volumes, i).to(pred.device)
        band = target.abs() < 1
        out.append(float((pred - target)[band].abs().mean()) if band.any() else 0.0)
        if not has_surface(pred):
            empty.append(i)
    return np.array(out), empty


def best_starts(decoder: Decoder, features: torch.Tensor, volumes: Volumes, k: int) -> list[int]:
    """Per group of ``k`` consecutive fits of one shape, the index of the one that decodes to a
    surface with the lowest band error (:func:`band_errors`; any fit if none has a surface)."""
    errors, empty = band_errors(decoder, features, volumes)
    empty_set = set(empty)
    scores = [(i in empty_set, float(e)) for i, e in enumerate(errors)]
    return [g * k + min(range(k), key=lambda j: scores[g * k + j]) for g in range(features.shape[0] // k)]
