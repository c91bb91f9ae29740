"""Training a prior (``necgs prior train``): its settings, its training corpora, and the written ``.ncgp``."""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from necgs.coding.sections import feature_model
from necgs.config import BAND_LOSS, FitConfig, TrainConfig
from necgs.errors import ConfigError, NecgsError
from necgs.geometry.fit import fit_volumes
from necgs.geometry.symmetry import augment_volume_set, check_augmentation
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import load_meshes
from necgs.model.decoder import DecoderConfig, decoder_config
from necgs.model.quant import QuantizedTensor, symmetric_spec, to_symbols
from necgs.paths import cache_dir, data_roots
from necgs.priors.ncgp import write_prior
from necgs.priors.prior import Prior
from necgs.training.features import band_errors
from necgs.training.train import train_autodecoder


@dataclass(frozen=True)
class PriorConfig:
    """How a prior is trained (``necgs prior train``).

    The defaults are the body prior's settings but two (the shipped ``bodies`` also trains
    on mirror images and quarter turns, ``augment="turns"``, for 10,000 steps): K = 64, width
    small (8-bit), a feature of 1 channel at 8^3 per shape, trained as an auto-encoder whose
    encoder sees the volume pooled to 16^3, patch training on 4 shapes x 16 blocks of 8^3 per
    step with the presets' band loss. An auto-encoder, because fitting features alone does not
    find good ones for new shapes in an auto-decoder's feature space; local 1 x 8^3 features,
    because they generalize to new shapes far better than 8 x 4^3 at about the same bytes
    (measurements: docs/ARCHITECTURE.md, "Priors", "Start features" and "Feature shape";
    benchmarks/README.md, "Priors with an encoder" and "Local features: one channel at 8^3").

    Attributes:
        resolution: K of the volumes.
        width: Decoder size (as :func:`necgs.model.decoder.decoder_config` takes it).
        feature_channels: C of each feature.
        feature_resolution: K' of each feature.
        fit_iterations: Fitting iterations of the training shapes' volumes.
        fit_samples: Surface samples per fitting iteration.
        steps: Training steps.
        lr: Peak learning rate.
        batch_size: Shapes per step.
        blocks_per_shape: Blocks per shape per step.
        block_size: Side of a block at resolution K.
        encoder_input: Train as an auto-encoder whose encoder pools the volumes to this side
            (None: an auto-decoder; new shapes then start from the nearest training feature).
        lambda1: Weight of the masked L1 on the band (the presets' band loss).
        tau: Half-width of that band in TSDF units.
        lambda2: Weight of the SSIM term.
        weight_bits: Quantization bits of the decoder (it is stored once, so 8).
        feature_bits: Quantization bits of the features.
        warmup_fraction: Share of warm-up steps.
        checkpoint_every: Epochs between checkpoints.
        seed: Seed of initialization and sampling.
        device: "auto", "cpu" or "cuda".
        augment: Train on exact copies of each shape too: "none", "mirror" (its mirror
            image) or "turns" (its mirror image, and both in 4 quarter turns about the up
            axis; :mod:`necgs.geometry.symmetry`).
    """

    resolution: int = 64
    width: int | str = "small"
    feature_channels: int = 1
    feature_resolution: int = 8
    fit_iterations: int = 30
    fit_samples: int = 10_000
    steps: int = 8_000
    lr: float = 5e-3
    batch_size: int = 4
    blocks_per_shape: int = 16
    block_size: int = 8
    encoder_input: int | None = 16
    lambda1: float = BAND_LOSS["lambda1"]
    tau: float = BAND_LOSS["tau"]
    lambda2: float = BAND_LOSS["lambda2"]
    weight_bits: int = 8
    feature_bits: int = 6
    warmup_fraction: float = 0.1
    checkpoint_every: int = 20
    seed: int = 0
    device: str = "auto"
    augment: str = "none"

    def __post_init__(self) -> None:
        check_augmentation(self.augment)

    def fit(self) -> FitConfig:
        """The fitting settings of the training shapes."""
        return FitConfig(
            resolution=self.resolution, iterations=self.fit_iterations, samples=self.fit_samples, device=self.device
        ).validate()

    def decoder(self) -> DecoderConfig:
        """The prior's decoder architecture."""
        return decoder_config(self.resolution, self.width, self.feature_channels, self.feature_resolution)

    def train(self, n_shapes: int) -> TrainConfig:
        """Training settings giving ``steps`` steps on ``n_shapes`` shapes."""
        if not 1 <= self.steps <= 10_000_000:
            raise ConfigError(f"prior steps must be in [1, 10000000], got {self.steps}")
        per_epoch = max(math.ceil(n_shapes / self.batch_size), 1)
        return TrainConfig(
            epochs=math.ceil(self.steps / per_epoch),
            lr=self.lr,
            batch_size=self.batch_size,
            blocks_per_shape=self.blocks_per_shape,
            block_size=self.block_size,
            mode="patch",
            weight_bits=self.weight_bits,
            feature_bits=self.feature_bits,
            warmup_fraction=self.warmup_fraction,
            checkpoint_every=self.checkpoint_every,
            seed=self.seed,
            device=self.device,
            lambda1=self.lambda1,
            tau=self.tau,
            lambda2=self.lambda2,
        ).validate()


ProgressFn = Callable[[str, int, int, str], None]


def resolve_source(source: str | os.PathLike) -> tuple[Path, str]:
    """The folder of a source and its label: its path relative to a data root, or as given."""
    path = resolve_dataset(source)
    for root in data_roots():
        try:
            return path, str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return path, str(source)


def load_sources(sources: Sequence[str | os.PathLike]) -> tuple[list, list[dict]]:
    """Meshes of every source (a data set name, folder, zip or file) and a record of each.

    Returns:
        The meshes (names prefixed by their source) and, per source, its name, shape count
        and a digest of its shape names.
    """
    meshes, record = [], []
    for source in sources:
        path, label = resolve_source(source)
        loaded = load_meshes(path)
        if not loaded.meshes:
            raise NecgsError(f"{source}: no usable mesh to train a prior on")
        names = [m.name for m in loaded.meshes]
        record.append(
            {
                "source": label,
                "shapes": len(names),
                "names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()[:16],
            }
        )
        for m in loaded.meshes:
            m.name = f"{label}/{m.name}"
        meshes.extend(loaded.meshes)
    return meshes, record


def train_prior(
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    cfg: PriorConfig | None = None,
    *,
    name: str | None = None,
    init: Prior | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> Prior:
    """Pretrain a decoder on one or more corpora and write it as a prior.

    Resumable: checkpoints go to ``checkpoint_dir`` (default: a cache folder named after
    the output), and a rerun with the same sources and settings continues from the last one.

    Args:
        sources: Data set names, folders, zips or mesh files.
        output: The ``.ncgp`` file to write.
        cfg: Training settings (default :class:`PriorConfig`).
        name: The prior's name (default: the output's stem).
        init: A prior to fine-tune from (same architecture).
        checkpoint_dir: Where checkpoints go.
        progress: ``progress(stage, done, total, detail)``; stages "fit" and "train".

    Returns:
        The written :class:`Prior`.
    """
    cfg = cfg or PriorConfig()
    dcfg = cfg.decoder()
    if init is not None and init.decoder_cfg.to_dict() != dcfg.to_dict():
        raise ConfigError(f"prior {init.name!r} has another architecture than the settings ask for")
    meshes, record = load_sources(sources)
    t0 = time.perf_counter()
    fit_cb = (lambda d, n: progress("fit", d, n, "")) if progress else False
    fitted = fit_volumes(meshes, cfg.fit(), progress=fit_cb)
    fit_seconds = time.perf_counter() - t0
    volumes, suffixes = augment_volume_set(fitted.volumes, cfg.augment)
    names = [m.name + suffix for suffix in suffixes for m in meshes]
    tcfg = cfg.train(len(volumes))
    ckpt = Path(checkpoint_dir) if checkpoint_dir else cache_dir("checkpoints", f"prior-{Path(output).stem}")
    train_cb = (
        (lambda e, n, loss, eta: progress("train", e, n, f"loss {loss:.4f}, ETA {eta:.0f} s")) if progress else False
    )
    init_state = init.decoder().state_dict() if init is not None else None
    codec = train_autodecoder(
        volumes,
        dcfg,
        tcfg,
        checkpoint_dir=ckpt,
        progress=train_cb,
        init_decoder=init_state,
        autoencoder=cfg.encoder_input is not None,
        encoder_input=cfg.encoder_input,
    )
    decoder = codec.decoder()
    errors, _ = band_errors(decoder, codec.features.value(), volumes)
    card = {
        "trained_on": record,
        "shape_names": names,
        "settings": asdict(cfg),
        "fine_tuned_from": {"name": init.name, "id": init.id} if init is not None else None,
        "fit_seconds": round(fit_seconds, 1),
        "train_seconds": round(codec.seconds, 1),
        "resumed_from_epoch": codec.resumed_from,
        "final_loss": codec.losses[-1] if codec.losses else None,
        "band_error_median": float(np.median(errors)),
        "band_error_p90": float(np.percentile(errors, 90)),
        "date": time.strftime("%Y-%m-%d"),
    }
    prior = Prior(
        name or Path(output).stem,
        dcfg,
        codec.weights,
        codec.features,
        feature_model(codec.features, "laplace"),  # a Laplace per channel codes any symbol
        cfg.fit(),
        card,
        encoder=quantize_encoder(codec.encoder) if codec.encoder is not None else None,
        encoder_input=cfg.encoder_input,
    )
    write_prior(output, prior)
    prior.path = Path(output)
    return prior


def quantize_encoder(state: dict[str, torch.Tensor], bits: int = 8) -> dict[str, QuantizedTensor]:
    """An encoder's float parameters as 8-bit tensors (one max-abs range each), for the prior file."""
    out = {}
    for name, t in state.items():
        spec = symmetric_spec(t, bits, per_tensor=True)
        out[name] = QuantizedTensor(to_symbols(t, spec), spec, tuple(t.shape))
    return out
