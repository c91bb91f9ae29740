"""The whole NeCGS configuration and its named presets.

``quick``    K = 64, patch training, width 10, 200 epochs, 30 fitting iterations: a few minutes
             for ~16 shapes on 2 CPU cores. On 16 AMA bodies at equal training time (800 steps)
             CD 8.5e-3 (F1 0.26) against 11.0e-3 (F1 0.17) for the former quick (K = 32, dense,
             width small, whose decoder has 8% more parameters).
``standard`` K = 64, patch training (blocks near the surface, ``TrainConfig.mode``), 600
             epochs of 4 shapes x 16 blocks of 8^3 per step, width small, 8-bit weights and
             features, volumes fitted with 50 iterations of 10k samples. On all 88 AMA bodies:
             228x vs binary PLY at CD 4.75e-3, F1 0.67 (at 6 bits: 329x, 5.98e-3, F1 0.51,
             below quick's 0.54); benchmarks/results/rd_humans_ama_standard_fit50_b8/.
``paper``    K = 128, L = 5, the authors' widths, 400 epochs at lr 1e-3 (patch training),
             100 fitting iterations (the paper: 500, which alone take over an hour for 16
             shapes on 2 CPU cores; raise ``fit.iterations`` on a GPU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from necgs.errors import ConfigError
from necgs.geometry.fit import FitConfig
from necgs.model.decoder import DecoderConfig, decoder_config
from necgs.training.train import TrainConfig


@dataclass(frozen=True)
class NecgsConfig:
    """Every setting of a compression run.

    Attributes:
        fit: The regular-representation stage (resolution K, fitting).
        width: Decoder size: a name ("tiny", "small", "medium", "large", "xl", "paper"),
            a base width, or explicit widths per stage. The rate knob.
        feature_channels: C of each embedded feature (paper: 16; 8 measured as good at
            half the feature bytes: CD 9.30e-3 vs 9.22e-3 on 4 AMA shapes at K = 32).
        feature_resolution: K' of each embedded feature.
        train: The auto-decoder training.
        deform: Use the deformation channels (False: the TSDF-only ablation).
        autoencoder: Features from an encoder of the volumes (the Fig. 8a ablation).
        coder: Entropy coder: "auto" (smallest per section), "rans", "huffman", "raw" or "laplace".
    """

    fit: FitConfig = field(default_factory=FitConfig)
    width: int | str | tuple[int, ...] = "small"
    feature_channels: int = 8
    feature_resolution: int = 4
    train: TrainConfig = field(default_factory=TrainConfig)
    deform: bool = True
    autoencoder: bool = False
    coder: str = "auto"

    def decoder(self) -> DecoderConfig:
        """The decoder architecture these settings describe."""
        return decoder_config(self.fit.resolution, self.width, self.feature_channels, self.feature_resolution)

    def validate(self) -> NecgsConfig:
        """Check every part before any work starts; raises :class:`ConfigError`."""
        self.fit.validate()
        self.train.validate()
        self.decoder()
        if self.coder not in ("auto", "rans", "huffman", "raw", "laplace"):
            raise ConfigError(f"coder must be auto, rans, huffman, raw or laplace, got {self.coder!r}")
        if not self.deform and self.fit.backend != "none":
            raise ConfigError("deform=False needs the fit backend 'none' (plain TSDF volumes)")
        return self

    def to_dict(self) -> dict:
        """JSON-ready form (stored in the archive header)."""
        d = asdict(self)
        d["width"] = list(self.width) if isinstance(self.width, tuple) else self.width
        return d


#: The loss of the quick and standard presets: Eq. 3 with the masked L1 at lambda1 100 (the paper:
#: 5) on the inner half of the band (|TSDF| < 0.5) and SSIM at lambda2 2 (the paper: 10). With
#: patch training it measured better than the paper's weights on 8 AMA bodies at 2,000 steps (CD
#: 5.65e-3 -> 4.43e-3, F1 0.56 -> 0.71), on 24 at 1,000 (9.91e-3 -> 7.36e-3, F1 0.22 -> 0.32) and on
#: 24 Thingi10K models (median 13.4e-3 -> 11.2e-3); without SSIM it did slightly better on the
#: bodies but left blobs after short runs (2 CAD parts, 100 steps: CD 0.23-0.31) and noisy CAD
#: surfaces. benchmarks/results/patch_settings.jsonl. The paper preset keeps Eq. 3 as published.
BAND_LOSS = {"lambda1": 100.0, "tau": 0.5, "lambda2": 2.0}
#: Half-thickness (voxels) the quick and standard presets give parts thinner than a grid step
#: (:class:`necgs.geometry.fit.FitConfig`). An elephant's ears are a few thousandths of its size
#: thick: no node falls inside them, so its fitted K = 64 volume lost 12% of the surface (CD
#: 10.8e-3, a cat 3.7e-3). Fitted CD off / 0.55 / 0.75: elephant 10.8 / 5.21 / 5.34e-3, an AMA
#: body 3.49 / 3.50 / 3.55e-3, a Thingi10K part 84.7 / 80.9 / 80.8e-3. The paper preset keeps
#: the plain TSDF.
THIN_VOXELS = 0.55

PRESETS: dict[str, NecgsConfig] = {
    "quick": NecgsConfig(
        fit=FitConfig(resolution=64, iterations=30, samples=10_000, thin_voxels=THIN_VOXELS),
        width=10,
        train=TrainConfig(epochs=200, mode="patch", **BAND_LOSS),
    ),
    "standard": NecgsConfig(
        fit=FitConfig(resolution=64, iterations=50, samples=10_000, thin_voxels=THIN_VOXELS),
        width="small",
        train=TrainConfig(
            epochs=600,
            mode="patch",
            batch_size=4,
            blocks_per_shape=16,
            block_size=8,
            weight_bits=8,
            feature_bits=8,
            **BAND_LOSS,
        ),
    ),
    "paper": NecgsConfig(
        fit=FitConfig(resolution=128, iterations=100, lr=0.01, lr_decay=0.01),
        width="paper",
        train=TrainConfig(
            epochs=400, lr=1e-3, batch_size=4, warmup_fraction=0.2, weight_bits=8, feature_bits=8, feature_lr_scale=1.0
        ),
    ),
}


def preset_ssim(name: str | None) -> bool:
    """Whether the named preset trains with the SSIM term (an unknown or missing name: quick's)."""
    return PRESETS.get(name or "quick", PRESETS["quick"]).train.use_ssim


def preset(
    name: str,
    *,
    width=None,
    device: str | None = None,
    epochs: int | None = None,
    ssim: bool | None = None,
    deform: bool | None = None,
    autoencoder: bool | None = None,
    resolution: int | None = None,
    weight_bits: int | None = None,
    feature_bits: int | None = None,
    train_mode: str | None = None,
    lambda_rate: float | None = None,
) -> NecgsConfig:
    """A named preset with the common overrides applied (validated).

    Args:
        name: "quick", "standard" or "paper".
        width: Decoder size override.
        resolution: Volume resolution K override (the Table 3 ablation); the decoder gets
            the number of upsampling modules that K needs.
        weight_bits: Quantization bits of the decoder parameters.
        feature_bits: Quantization bits of the embedded features.
        lambda_rate: lambda_R, weight of the rate term in training (0: none).
        device: "auto", "cpu" or "cuda" for both stages.
        epochs: Training epochs override.
        ssim: Switch the SSIM term (the Fig. 8b ablation).
        deform: Switch the deformation (False: plain TSDF, the Table 2 ablation).
        autoencoder: Use the auto-encoder instead of the auto-decoder (the Fig. 8a ablation).
        train_mode: "patch" (blocks near the surface) or "dense" (whole volumes, the paper's).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    fit, train = cfg.fit, cfg.train
    if device is not None:
        fit, train = replace(fit, device=device), replace(train, device=device)
    if epochs is not None:
        train = replace(train, epochs=epochs)
    if resolution is not None:
        fit = replace(fit, resolution=resolution)
    if weight_bits is not None:
        train = replace(train, weight_bits=weight_bits)
    if feature_bits is not None:
        train = replace(train, feature_bits=feature_bits)
    if lambda_rate is not None:
        train = replace(train, lambda_rate=lambda_rate)
    if ssim is not None:
        train = replace(train, use_ssim=ssim)
    if train_mode is not None:
        train = replace(train, mode=train_mode)
    if deform is False:
        fit = replace(fit, backend="none")
    cfg = replace(
        cfg, fit=fit, train=train, deform=cfg.deform if deform is None else deform, autoencoder=bool(autoencoder)
    )
    if width is not None:
        cfg = replace(cfg, width=width)
    return cfg.validate()
