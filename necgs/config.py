"""The settings tree: the frozen dataclasses that describe a NeCGS setting, and the named presets.

:class:`Setting` is the root (a preset, a :class:`NecgsConfig` with its :class:`FitConfig` and
:class:`TrainConfig`, a prior and its :class:`PriorFitConfig`); every node shares one
``to_dict`` / ``from_dict`` pair (:class:`Tree`), which writes and reads an archive's stored
config. The knobs a user sets (flags, setting dicts, app controls) are a table of field paths
into this tree: :mod:`necgs.settings`.


``quick``    K = 64, patch training, width 10, 200 epochs, 30 fitting iterations: the fast
             preset, for trying a set on a CPU.
``standard`` K = 64, patch training (blocks near the surface, ``TrainConfig.mode``), 600
             epochs of 4 shapes x 16 blocks of 8^3 per step, width small with its 4 upsampling
             modules tied (one set of weights, 3.6x fewer than untied), 8-bit weights, 4-bit
             features, volumes fitted with 50 iterations of 10k samples: the slower preset, for
             the best quality per byte on a CPU (688x at 0.80x decimation + Draco's CD on all 88
             AMA bodies, 791x at 0.57x on the 66 animals).
``paper``    K = 128, L = 5, the authors' widths, 400 epochs at lr 1e-3 (patch training),
             100 fitting iterations instead of the paper's 500, which a CPU cannot afford (raise
             ``fit.iterations`` on a GPU).

Measurements: benchmarks/README.md ("Blocks of 8^3: the patch settings measured", "The codec
issue's targets, measured", "`standard`'s fitting and bits, and the CAD sets with the final
loss", "`standard` with a tied decoder") and docs/ARCHITECTURE.md, "Decisions and why" ("CPU
fitting error", "Tied upsampling modules").
"""

from __future__ import annotations

import hashlib
import json
import numbers
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from necgs.errors import ConfigError

if TYPE_CHECKING:  # annotations only: the model imports this module
    from necgs.model.decoder import DecoderConfig

#: Resolutions accepted for volumes.
MIN_RESOLUTION, MAX_RESOLUTION = 8, 256
#: Where fitting and training run ("auto": CUDA when present).
DEVICES = ("auto", "cpu", "cuda")
#: Fitting backends (:mod:`necgs.geometry.fit`).
BACKENDS = ("points", "none", "nvdiffrast")
#: Training modes: blocks near the surface, or whole volumes (the paper's).
TRAIN_MODES = ("patch", "dense")
#: Entropy coders of the archive's sections (:mod:`necgs.coding.streams`); "auto": the smallest per section.
CODERS = ("auto", "rans", "huffman", "raw", "laplace")


def validate_resolution(K: int) -> None:
    """Raise :class:`ConfigError` unless K is a power of two in [8, 256]."""
    if not isinstance(K, numbers.Integral) or K < MIN_RESOLUTION or K > MAX_RESOLUTION or K & (K - 1):
        raise ConfigError(f"resolution must be a power of two between {MIN_RESOLUTION} and {MAX_RESOLUTION}, got {K!r}")


T = TypeVar("T", bound="Tree")


class Tree:
    """Base of the frozen dataclasses of a setting: one ``to_dict`` / ``from_dict`` pair for all.

    The dict form is plain JSON (nested dicts, tuples as lists); it is what an archive's header
    stores. ``from_dict`` fills a missing key with the field's default (archives written before
    the field existed) and refuses an unknown key or a value of the wrong type.
    """

    def to_dict(self) -> dict:
        """JSON-ready form: nested dicts, tuples as lists."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls: type[T], data: Mapping, where: str = "") -> T:
        """The tree a :meth:`to_dict` form describes (not validated: call ``validate``).

        Args:
            data: The dict form; missing keys take the defaults.
            where: Dotted path of this node, for error messages.

        Raises:
            ConfigError: An unknown key or a value of the wrong type (one line naming it).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"setting {where or cls.__name__} must be a mapping, got {data!r}")
        hints = _field_types(cls)
        unknown = [k for k in data if k not in hints]
        if unknown:
            raise ConfigError(f"unknown setting {_join(where, str(unknown[0]))!r}; known: {', '.join(hints)}")
        return cls(**{k: _typed(v, hints[k], _join(where, k)) for k, v in data.items()})


def _plain(value):
    if isinstance(value, Tree):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


@cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _typed(value, hint, where: str):
    """``value`` as the annotated type ``hint`` (lists become tuples, ints become floats)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            try:
                return _typed(value, option, where)
            except ConfigError:
                continue
    elif hint is type(None):
        if value is None:
            return None
    elif isinstance(hint, type) and issubclass(hint, Tree):
        return hint.from_dict(value, where)
    elif origin is tuple and isinstance(value, (list, tuple)):
        item = typing.get_args(hint)[0]
        return tuple(_typed(v, item, where) for v in value)
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif hint in (int, str, bool) and type(value) is hint:
        return value
    raise ConfigError(f"setting {where} must be {_type_name(hint)}, got {value!r}")


def _type_name(hint) -> str:
    return str(hint).replace("typing.", "") if typing.get_origin(hint) else hint.__name__


@dataclass(frozen=True)
class FitConfig(Tree):
    """Settings of the regular-representation stage.

    Attributes:
        resolution: K, nodes per axis (power of two, 8..256).
        truncation_voxels: TSDF truncation in voxels.
        fill: Half-side of the cube the shape's bounding box is mapped into (grid frame).
        backend: "points" (CPU default), "nvdiffrast" (paper's rendering loss, CUDA) or
            "none" (plain TSDF, zero deformation: the ablation).
        iterations: Adam iterations per shape (paper: 500).
        lr: Initial learning rate (paper: 0.01), decayed exponentially to ``lr * lr_decay``.
        lr_decay: Final learning rate as a fraction of ``lr``.
        samples: Points sampled on each surface per iteration.
        deform_weight: Weight of the L1 penalty on deformations (half-voxel units).
        seed: Seed of the surface sampling.
        device: "auto", "cpu" or "cuda".
        thin_voxels: Parts thinner than a grid step become slabs of this half-thickness in
            voxels instead of vanishing (0: off, the paper's TSDF).
    """

    resolution: int = 64
    truncation_voxels: float = 2.0
    fill: float = 0.9
    backend: str = "points"
    iterations: int = 100
    lr: float = 0.01
    lr_decay: float = 0.1
    samples: int = 20_000
    deform_weight: float = 1e-4
    seed: int = 0
    device: str = "auto"
    thin_voxels: float = 0.0

    def validate(self) -> FitConfig:
        """Raise :class:`ConfigError` on any out-of-range setting; returns self."""
        validate_resolution(self.resolution)
        if self.backend not in BACKENDS:
            raise ConfigError(f"fit backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not 0 < self.truncation_voxels <= 16:
            raise ConfigError(f"truncation must be in (0, 16] voxels, got {self.truncation_voxels}")
        if not 0.5 <= self.fill <= 1.0:
            raise ConfigError(f"fill must be in [0.5, 1], got {self.fill}")
        if not 0 <= self.iterations <= 100_000:
            raise ConfigError(f"fit iterations must be in [0, 100000], got {self.iterations}")
        if not (0 < self.lr <= 1 and 0 < self.lr_decay <= 1):
            raise ConfigError("fit lr must be in (0, 1] and lr_decay in (0, 1]")
        if not 100 <= self.samples <= 10_000_000:
            raise ConfigError(f"fit samples must be in [100, 1e7], got {self.samples}")
        if not 0 <= self.thin_voxels <= 2:
            raise ConfigError(f"thin-part half-thickness must be in [0, 2] voxels, got {self.thin_voxels}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        return self

    def cache_key(self) -> str:
        """Digest of every setting that changes the fitted volume (not the device)."""
        settings = asdict(self)
        settings.pop("device")
        if not settings["thin_voxels"]:
            settings.pop("thin_voxels")  # volumes fitted before the setting existed keep their key
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainConfig(Tree):
    """Settings of the auto-decoder training.

    Attributes:
        epochs: Passes over all shapes (paper: 400).
        lr: Peak Adam learning rate (paper: 1e-3); the default is below the rates that collapse
            wider decoders and K = 64 to an "everything outside" volume on larger sets, and
            gradients are clipped (measurements: docs/ARCHITECTURE.md, 'Decisions and why',
            "Learning rate 5e-3 with gradient clipping").
        batch_size: Shapes per step.
        warmup_fraction: Share of the steps with a linear warm-up before the cosine decay.
        weight_bits: N for every decoder parameter (paper: 8); 6 by default, which decodes as
            well as 8 for fewer bytes, while fewer bits start to cost CD (measurements:
            docs/ARCHITECTURE.md, 'Decisions and why', "6-bit weights and features by default").
        feature_bits: N for the embedded features (paper: 8).
        per_tensor_ranges: Quantize each tensor on [-max|x|, max|x|] instead of the paper's [-1, 1].
        learn_ranges: Train each tensor's range [-r, r] (the features' too) with the network
            instead of taking max|x| (learned step sizes, :class:`necgs.model.quant.LearnedRange`);
            needs ``per_tensor_ranges``. The archive stores the learned r like a max-abs range.
            Off by default because max-abs ranges at fewer bits gave a lower CD for the same
            bytes (measurements: docs/ARCHITECTURE.md, 'Decisions and why', "Learned ranges";
            benchmarks/README.md, "Learned quantization ranges and bits at K = 64").
        lambda1, lambda2, tau, use_ssim: Loss weights of Eq. 3.
        ssim_crop: Side of the random cube the SSIM term is taken on, as a fraction of K
            (1: the whole volume, as the paper).
        deform_weight: Weight of the three deformation channels against the TSDF channel in
            every term of Eq. 3 (1: the paper's, all channels alike).
        ssim_fade: Share of the steps over which the SSIM weight lambda2 falls linearly to 0
            (0: constant, the paper's; 1: it reaches 0 at the last step).
        feature_init_std: Standard deviation of the initial features (authors: 1/3).
        feature_lr_scale: Learning rate of the embedded features as a multiple of ``lr``.
            A feature is only updated when its shape is in the batch (once per epoch), so at
            CPU epoch counts it barely leaves its random start at the decoder's rate
            (measurements: docs/ARCHITECTURE.md, 'Decisions and why', "Features learn 10x faster
            than the decoder").
        lambda_rate: lambda_R, weight of the rate term added to Eq. 3: the estimated archive
            bits per output voxel (:func:`necgs.coding.bit_estimate.rate_term`); 0 leaves it out.
        checkpoint_every: Epochs between checkpoints (0: never).
        seed: Seed of initialization and batch order.
        device: "auto", "cpu" or "cuda".
        mode: "patch" (each step decodes ``blocks_per_shape`` output blocks of each of its
            ``batch_size`` shapes, see :mod:`necgs.training.patches`) or "dense" (whole
            volumes, the paper's training, kept as the reference).
        block_size: Side P of a training block at resolution K. 8 rather than 16: a small block
            is mostly band, so the loss is not diluted by far-field voxels, and a step sees 4x as
            many places (measurements: benchmarks/README.md, "Blocks of 8^3: the patch settings
            measured").
        blocks_per_shape: Blocks drawn from each shape of a step; more blocks cost
            proportionally more per step for the same progress per second (measurements: the
            same section).
        band_fraction: Share of the blocks drawn from positions touching the band
            |TSDF| < tau; the rest come from the far field.
        coarse_weight: Weight of the coarse head's L1 loss against the average-pooled TSDF.
        lambda_surface: Weight of the surface term: the two-way distance (voxels) between the
            DMC surfaces of each decoded block and its target
            (:func:`necgs.training.losses.surface_loss`); 0 leaves it out (Eq. 3 alone, the
            reference arm).
    """

    epochs: int = 60
    lr: float = 5e-3
    batch_size: int = 4
    warmup_fraction: float = 0.1
    weight_bits: int = 6
    feature_bits: int = 6
    per_tensor_ranges: bool = True
    learn_ranges: bool = False
    lambda1: float = 5.0
    lambda2: float = 10.0
    tau: float = 1.0
    use_ssim: bool = True
    ssim_crop: float = 0.5
    deform_weight: float = 1.0
    ssim_fade: float = 0.0
    feature_init_std: float = 1.0 / 3.0
    feature_lr_scale: float = 10.0
    lambda_rate: float = 0.0
    checkpoint_every: int = 5
    seed: int = 0
    device: str = "auto"
    mode: str = "patch"
    block_size: int = 8
    blocks_per_shape: int = 16
    band_fraction: float = 0.85
    coarse_weight: float = 1.0
    lambda_surface: float = 0.0

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` on any out-of-range setting; returns self."""
        if not 0 <= self.epochs <= 100_000:
            raise ConfigError(f"epochs must be in [0, 100000], got {self.epochs}")
        if not 0 < self.lr <= 1:
            raise ConfigError(f"learning rate must be in (0, 1], got {self.lr}")
        if not 1 <= self.batch_size <= 4096:
            raise ConfigError(f"batch size must be in [1, 4096], got {self.batch_size}")
        for name in ("weight_bits", "feature_bits"):
            if not 2 <= getattr(self, name) <= 16:
                raise ConfigError(f"{name.replace('_', ' ')} must be in [2, 16], got {getattr(self, name)}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"warm-up fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0 < self.ssim_crop <= 1:
            raise ConfigError(f"SSIM crop must be a fraction in (0, 1], got {self.ssim_crop}")
        if not 0 < self.feature_lr_scale <= 1000:
            raise ConfigError(f"feature lr scale must be in (0, 1000], got {self.feature_lr_scale}")
        if not 0 <= self.ssim_fade <= 1:
            raise ConfigError(f"ssim_fade must be a fraction in [0, 1], got {self.ssim_fade}")
        if not 0 <= self.lambda_rate <= 1000:
            raise ConfigError(f"lambda_rate must be in [0, 1000], got {self.lambda_rate}")
        if min(self.lambda1, self.lambda2, self.tau, self.deform_weight) < 0 or self.checkpoint_every < 0:
            raise ConfigError("loss weights, tau and checkpoint_every must be non-negative")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.learn_ranges and not self.per_tensor_ranges:
            raise ConfigError("learned ranges need per-tensor ranges")
        if self.mode not in TRAIN_MODES:
            raise ConfigError(f"training mode must be patch or dense, got {self.mode!r}")
        if self.block_size not in (4, 8, 16, 32, 64):
            raise ConfigError(f"block size must be 4, 8, 16, 32 or 64, got {self.block_size}")
        if self.mode == "patch" and self.use_ssim and self.block_size < 8:
            raise ConfigError(f"block size {self.block_size} is smaller than the SSIM window; use 8 or more")
        if not 1 <= self.blocks_per_shape <= 512:
            raise ConfigError(f"blocks per shape must be in [1, 512], got {self.blocks_per_shape}")
        if not 0 <= self.band_fraction <= 1:
            raise ConfigError(f"band fraction must be in [0, 1], got {self.band_fraction}")
        if self.coarse_weight < 0:
            raise ConfigError(f"coarse weight must be non-negative, got {self.coarse_weight}")
        if not 0 <= self.lambda_surface <= 1000:
            raise ConfigError(f"lambda_surface must be in [0, 1000], got {self.lambda_surface}")
        return self


@dataclass(frozen=True)
class NecgsConfig(Tree):
    """Every setting of a compression run.

    Attributes:
        fit: The regular-representation stage (resolution K, fitting).
        width: Decoder size: a name ("tiny", "small", "medium", "large", "xl", "paper"),
            a base width, or explicit widths per stage. The rate knob.
        feature_channels: C of each embedded feature (paper: 16; 8 decodes about as well at
            half the feature bytes; measurements: docs/ARCHITECTURE.md, 'Decisions and why',
            "Decoder widths").
        feature_resolution: K' of each embedded feature.
        train: The auto-decoder training.
        deform: Use the deformation channels (False: the TSDF-only ablation).
        autoencoder: Features from an encoder of the volumes (the Fig. 8a ablation).
        coder: Entropy coder: "auto" (smallest per section), "rans", "huffman", "raw" or "laplace".
        tied_modules: The first N upsampling modules share one set of weights
            (:class:`necgs.model.decoder.DecoderConfig`; 0: none, the paper's decoder). A
            decoder with fewer modules (a smaller K) ties all it has, so a tied preset still
            runs the resolution ablation.
    """

    fit: FitConfig = field(default_factory=FitConfig)
    width: int | str | tuple[int, ...] = "small"
    feature_channels: int = 8
    feature_resolution: int = 4
    train: TrainConfig = field(default_factory=TrainConfig)
    deform: bool = True
    autoencoder: bool = False
    coder: str = "auto"
    tied_modules: int = 0

    def decoder(self) -> DecoderConfig:
        """The decoder architecture these settings describe."""
        from necgs.model.decoder import (  # torch: kept off the CLI's start (its flags come from here)
            decoder_config,
            upsampling_modules,
        )

        modules = upsampling_modules(self.fit.resolution, self.feature_resolution)
        return decoder_config(
            self.fit.resolution,
            self.width,
            self.feature_channels,
            self.feature_resolution,
            tied_modules=min(self.tied_modules, modules),
        )

    def validate(self) -> NecgsConfig:
        """Check every part before any work starts; raises :class:`ConfigError`."""
        self.fit.validate()
        self.train.validate()
        self.decoder()
        if self.coder not in CODERS:
            raise ConfigError(f"coder must be auto, rans, huffman, raw or laplace, got {self.coder!r}")
        if not self.deform and self.fit.backend != "none":
            raise ConfigError("deform=False needs the fit backend 'none' (plain TSDF volumes)")
        return self


#: The loss of the quick and standard presets: Eq. 3 with the masked L1 at lambda1 100 (the paper:
#: 5) on the inner half of the band (|TSDF| < 0.5, where the surface's position is decided) and
#: SSIM at lambda2 2 (the paper: 10), which with patch training decodes closer than the paper's
#: weights; SSIM stays because without it short runs leave blobs. The paper preset keeps Eq. 3 as
#: published (measurements: docs/ARCHITECTURE.md, 'Decisions and why', "The presets' band loss").
BAND_LOSS = {"lambda1": 100.0, "tau": 0.5, "lambda2": 2.0}
#: Half-thickness (voxels) the quick and standard presets give parts thinner than a grid step
#: (:class:`FitConfig`), so that parts no grid node falls inside (an elephant's ears) survive
#: fitting as slabs instead of vanishing; the paper preset keeps the plain TSDF (measurements:
#: docs/ARCHITECTURE.md, 'Decisions and why', "Parts thinner than a grid step").
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
        tied_modules=4,
        train=TrainConfig(
            epochs=600,
            mode="patch",
            batch_size=4,
            blocks_per_shape=16,
            block_size=8,
            weight_bits=8,
            feature_bits=4,
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


@dataclass(frozen=True)
class PriorFitConfig(Tree):
    """How new shapes are compressed against a prior (``compress --prior``).

    The defaults were chosen on unseen samba frames against the body priors (measurements:
    benchmarks/README.md, "Priors with an encoder", "Fine-tuning a prior for one mesh or a few"
    with its table "How the fine-tuning defaults were chosen", "Local features: one channel at
    8^3", "A coarser delta for a set" and "The delta's rate term").

    Attributes:
        fit_iterations: Fitting iterations of each new shape's volume (as the priors' own
            training volumes: 30 iterations of 10k samples).
        fit_samples: Surface samples per fitting iteration.
        visits: Feature updates per shape.
        batch_size: Shapes per step.
        blocks_per_shape: Blocks of each shape per step.
        block_size: Side of a fitting block at resolution K.
        lr: Peak learning rate of the features; None: ``lr_per_std`` x the standard deviation
            of the prior's training features.
        lr_per_std: The learning rate per unit of feature scale: an encoder prior's features
            are far smaller than an auto-decoder's, and a rate fixed for one throws the other's
            off.
        lambda1: Weight of the masked L1 on the band (the presets' band loss).
        tau: Half-width of that band in TSDF units.
        lambda2: Weight of the SSIM term.
        band_fraction: Share of the feature-fitting blocks drawn near the surface;
            the rest come from the far field, which keeps local features from growing
            floaters there, most of all on shapes unlike the prior's training shapes.
        fine_tune_band_fraction: The same share while fine-tuning; training's share, which
            fine-tunes closer than the far-field-heavy share that suits the features alone.
        fine_tune_steps: After the features are fitted, steps that also train a coded delta
            of the prior's decoder (0: the archive holds features only); a few hundred bring an
            unseen shape close to the CD a decoder trained on its set reaches.
        fine_tune_visits: Feature updates per shape before fine-tuning (instead of
            ``visits``); few, because fine-tuning updates the features too.
        fine_tune_lr: Peak learning rate of the decoder's weights while fine-tuning.
        fine_tune_cosine: Decay both learning rates to zero over the fine-tuning steps (half a
            cosine) instead of keeping them constant, which fine-tunes closer and more evenly
            from shape to shape.
        fine_tune_blocks: Blocks of each shape per fine-tuning step, the count that gave the
            lowest CD for the CPU time of a single-mesh compression.
        delta_multiple: A delta step in steps of the prior's weight grid: coarser steps trade
            CD for bytes; the default suits one mesh, while a set is better served by a coarser
            one (``compress --delta-step``).
        delta_bits: Bits of a delta symbol (a weight may move by up to 2^(bits-1) delta steps).
        fine_tune_lambda_rate: lambda_R of the fine-tuning loss: the weight of the estimated
            bits of the delta and the features per output voxel
            (:func:`necgs.coding.bit_estimate.rate_term`); 0 leaves the rate term out. The
            default takes about a third off one mesh's delta for a slightly higher CD.
    """

    fit_iterations: int = 30
    fit_samples: int = 10_000
    visits: int = 150
    batch_size: int = 16
    blocks_per_shape: int = 16
    block_size: int = 8
    lr: float | None = None
    lr_per_std: float = 0.04
    lambda1: float = BAND_LOSS["lambda1"]
    tau: float = BAND_LOSS["tau"]
    lambda2: float = BAND_LOSS["lambda2"]
    band_fraction: float = 0.5
    fine_tune_band_fraction: float = 0.85
    fine_tune_steps: int = 0
    fine_tune_visits: int = 25
    fine_tune_lr: float = 2e-3
    fine_tune_blocks: int = 16
    fine_tune_cosine: bool = True
    delta_multiple: int = 4
    delta_bits: int = 6
    fine_tune_lambda_rate: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.fine_tune_steps <= 100_000:
            raise ConfigError(f"fine-tuning steps must be in [0, 100000], got {self.fine_tune_steps}")
        if not 1 <= self.fine_tune_blocks <= 4096:
            raise ConfigError(f"fine-tuning blocks must be in [1, 4096], got {self.fine_tune_blocks}")
        if not 1 <= self.delta_multiple <= 256 or not 2 <= self.delta_bits <= 12:
            raise ConfigError(
                f"delta multiple (--delta-step) must be in [1, 256] and delta bits in [2, 12], "
                f"got {self.delta_multiple}, {self.delta_bits}"
            )
        if not 0 <= self.fine_tune_lambda_rate <= 1000:
            raise ConfigError(f"fine-tuning lambda_R must be in [0, 1000], got {self.fine_tune_lambda_rate}")
        if not 0 < self.fine_tune_lr <= 1:
            raise ConfigError(f"fine-tuning lr must be in (0, 1], got {self.fine_tune_lr}")
        for name in ("band_fraction", "fine_tune_band_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be in [0, 1], got {getattr(self, name)}")

    def fit(self, frame: FitConfig, device: str = "auto") -> FitConfig:
        """A prior's fitting frame (resolution, truncation, fill) with this budget."""
        return replace(frame, iterations=self.fit_iterations, samples=self.fit_samples, device=device).validate()

    def train(self, feature_std: float, feature_bits: int, weight_bits: int, device: str = "auto") -> TrainConfig:
        """Feature-fitting settings (:func:`necgs.training.train.fit_features`) against a prior whose
        training features have standard deviation ``feature_std`` and whose features and weights are
        quantized to ``feature_bits`` and ``weight_bits``: ``visits`` epochs (``fine_tune_visits`` when
        fine-tuning follows)."""
        lr = self.lr if self.lr is not None else max(self.lr_per_std * feature_std, 1e-6)
        return TrainConfig(
            epochs=self.fine_tune_visits if self.fine_tune_steps else self.visits,
            lr=lr,
            feature_lr_scale=1.0,
            batch_size=self.batch_size,
            blocks_per_shape=self.blocks_per_shape,
            block_size=self.block_size,
            mode="patch",
            feature_bits=feature_bits,
            weight_bits=weight_bits,
            checkpoint_every=0,
            device=device,
            lambda1=self.lambda1,
            tau=self.tau,
            lambda2=self.lambda2,
            band_fraction=self.band_fraction,
        ).validate()


@dataclass(frozen=True)
class Setting(Tree):
    """One NeCGS codec setting, the root of the tree: what a codec setting dict, the flags of
    ``necgs compress`` and the app's controls describe (:mod:`necgs.settings` maps each knob of
    those onto a field path of this tree).

    Attributes:
        preset: The named preset ``config`` started from; labels name what departs from it.
        config: The settings of a decoder trained on the set (of a run against a prior: its
            device and coder).
        prior: Compress against this prior (a name, a ``.ncgp`` path, or "auto": the better of
            the installed priors and a set-trained decoder); None trains a decoder.
        prior_fit: How shapes are fitted against the prior (``fine_tune_steps`` > 0: the prior's
            decoder is fine-tuned too and its coded change stored).
    """

    preset: str = "quick"
    config: NecgsConfig = field(default_factory=lambda: PRESETS["quick"])
    prior: str | None = None
    prior_fit: PriorFitConfig = field(default_factory=PriorFitConfig)

    def validate(self) -> Setting:
        """Check every part before any work starts; raises :class:`ConfigError`."""
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; use one of {', '.join(PRESETS)}")
        self.config.validate()
        return self
