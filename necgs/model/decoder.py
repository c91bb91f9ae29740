"""The shared 3D-convolution decoder of the auto-decoder (paper Fig. 11, appendix B.1).

features (B, C, K', K', K') -> head Conv3d (C -> w0) -> L x [Conv3d(w_l -> 8 w_{l+1}),
3D pixel shuffle x2, GELU] -> Conv3d (w_L -> 4) -> TSDF-Def volume (B, 4, K, K, K),
with K = K' * 2^L. Every weight and bias can be passed through the quantizer in the
forward pass (quantization-aware training), so the decoder rebuilt from the archive's
integer symbols computes exactly what was trained.

Two ways of computing less than the whole volume (:mod:`necgs.model.blocks`):

- **Blocks.** An output block of side P at origin a needs, at each coarser level, a window
  of the level's input with a halo of 2 voxels; the coarse levels run whole and the fine
  levels run as valid convolutions on halo-padded crops, with every position outside the
  grid set to zero level by level, so a block equals the same block of the dense decode.
- **A coarse head** (``DecoderConfig.coarse_head``): one 3^3 conv to 1 channel at the level
  of resolution K/4, trained against the target TSDF average-pooled to that level. It tells
  sparse decoding which blocks hold the surface and the sign of the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from necgs.errors import ConfigError
from necgs.model.quant import QuantSpec, quantize, symmetric_spec
from necgs.model.windows import crop_windows, outside_mask

#: Named decoder sizes: the base width W of the tapering schedule.
NAMED_WIDTHS = {"tiny": 8, "small": 12, "medium": 16, "large": 24, "xl": 32}
#: The authors' released widths at K = 128 (5 modules).
PAPER_WIDTHS = (64, 48, 32, 24, 16)


def width_schedule(width: int, modules: int) -> tuple[int, ...]:
    """Widths for ``modules`` upsampling modules from base width W: W at every stage.

    Constant, because the last stages carry the near-surface detail: a schedule tapering to W/2
    there decoded worse at a similar size (measurements: docs/ARCHITECTURE.md, 'Decisions and
    why', "Decoder widths").
    """
    return tuple(max(width, 4) for _ in range(modules + 1))


@dataclass(frozen=True)
class DecoderConfig:
    """Architecture of the decoder and of the embedded features.

    Attributes:
        resolution: K, side of the output volume.
        feature_resolution: K', side of each embedded feature (paper: 4).
        feature_channels: C, channels of each embedded feature (paper: 16).
        widths: Channels after the head and after each upsampling module
            (L + 1 values, L = log2(K / K')).
        coarse_head: Whether the decoder has the coarse TSDF head (archives before
            format 1.2 have none and always decode densely).
        tied_modules: The first ``tied_modules`` upsampling modules are one module applied
            that many times (0 or 1: every module its own weights). The modules are alike in
            shape and each holds about a quarter of the weights at K = 64, so tying them takes
            that share off the archive for each module folded in; needs equal widths over the
            tied levels (issue #30, "fewer decoder bytes").
    """

    resolution: int = 64
    feature_resolution: int = 4
    feature_channels: int = 16
    widths: tuple[int, ...] = width_schedule(16, 4)
    coarse_head: bool = False
    tied_modules: int = 0

    def module_slot(self, level: int) -> int:
        """Index in ``Decoder.ups`` of the module that runs upsampling level ``level`` (0-based)."""
        return max(level - max(self.tied_modules - 1, 0), 0)

    @property
    def distinct_modules(self) -> int:
        """How many upsampling modules hold their own weights."""
        return self.module_slot(self.modules - 1) + 1

    @property
    def modules(self) -> int:
        """L, the number of upsampling modules."""
        return int(round(math.log2(self.resolution / self.feature_resolution)))

    @property
    def coarse_level(self) -> int:
        """Index of the level the coarse head reads: resolution K/4 (or K' for small L)."""
        return max(self.modules - 2, 0)

    @property
    def coarse_resolution(self) -> int:
        """Side of the coarse head's output grid."""
        return self.feature_resolution * 2**self.coarse_level

    def level_resolution(self, level: int) -> int:
        """Side of the grid of level ``level`` (0: K', L: K)."""
        return self.feature_resolution * 2**level

    def validate(self) -> DecoderConfig:
        """Raise :class:`ConfigError` on inconsistent settings; returns self."""
        K, Kp = self.resolution, self.feature_resolution
        if Kp < 1 or K % Kp or (K // Kp) & (K // Kp - 1) or K // Kp < 2:
            raise ConfigError(f"resolution {K} must be feature resolution {Kp} times a power of two >= 2")
        if not 1 <= self.feature_channels <= 256:
            raise ConfigError(f"feature channels must be in [1, 256], got {self.feature_channels}")
        if len(self.widths) != self.modules + 1:
            raise ConfigError(f"need {self.modules + 1} widths for K={K}, K'={Kp}, got {len(self.widths)}")
        if any(not 1 <= w <= 1024 for w in self.widths):
            raise ConfigError(f"decoder widths must be in [1, 1024], got {self.widths}")
        if not 0 <= self.tied_modules <= self.modules:
            raise ConfigError(f"tied modules must be in [0, {self.modules}] at K={K}, K'={Kp}: {self.tied_modules}")
        if len(set(self.widths[: self.tied_modules + 1])) > 1:
            raise ConfigError(f"tied modules need equal widths over their levels, got {self.widths}")
        return self

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "resolution": self.resolution,
            "feature_resolution": self.feature_resolution,
            "feature_channels": self.feature_channels,
            "widths": list(self.widths),
            "coarse_head": self.coarse_head,
            **({"tied_modules": self.tied_modules} if self.tied_modules > 1 else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> DecoderConfig:
        """Inverse of :meth:`to_dict` (validated)."""
        return cls(
            int(data["resolution"]),
            int(data["feature_resolution"]),
            int(data["feature_channels"]),
            tuple(int(w) for w in data["widths"]),
            bool(data.get("coarse_head", False)),
            int(data.get("tied_modules", 0)),
        ).validate()


def upsampling_modules(resolution: int, feature_resolution: int) -> int:
    """L, the upsampling modules from a K'^3 feature to a K^3 volume (K = K' 2^L)."""
    return int(round(math.log2(max(resolution // max(feature_resolution, 1), 1))))


def decoder_config(
    resolution: int,
    width: int | str | tuple[int, ...],
    feature_channels: int = 16,
    feature_resolution: int = 4,
    coarse_head: bool = True,
    tied_modules: int = 0,
) -> DecoderConfig:
    """Build a :class:`DecoderConfig` from a named size, a base width or explicit widths."""
    modules = upsampling_modules(resolution, feature_resolution)
    if isinstance(width, str):
        if width == "paper":
            widths = PAPER_WIDTHS[-(modules + 1) :] if modules + 1 <= len(PAPER_WIDTHS) else (64,) + PAPER_WIDTHS
        elif width in NAMED_WIDTHS:
            widths = width_schedule(NAMED_WIDTHS[width], modules)
        else:
            raise ConfigError(
                f"unknown decoder size {width!r}; use one of {', '.join([*NAMED_WIDTHS, 'paper'])} or a number"
            )
    elif isinstance(width, int):
        if not 1 <= width <= 1024:
            raise ConfigError(f"decoder width must be in [1, 1024], got {width}")
        widths = width_schedule(width, modules)
    else:
        widths = tuple(int(w) for w in width)
    return DecoderConfig(
        resolution, feature_resolution, feature_channels, tuple(widths), coarse_head, tied_modules
    ).validate()


def pixel_shuffle_3d(x: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """(B, C * s^3, D, H, W) -> (B, C, D s, H s, W s), the 3D analogue of PixelShuffle."""
    b, c, d, h, w = x.shape
    s3 = scale**3
    if c % s3:
        raise ValueError(f"channels {c} not divisible by scale^3 = {s3}")
    x = x.reshape(b, c // s3, scale, scale, scale, d, h, w)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c // s3, d * scale, h * scale, w * scale)


def _conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: int = 1) -> torch.Tensor:
    """3x3x3 convolution; padding 1 keeps the shape, 0 is the valid convolution of a crop."""
    return F.conv3d(x, weight, bias, padding=padding)


def _use_onednn(x: torch.Tensor) -> bool:
    """Whether to decode through oneDNN: CPU inference (no autograd) with oneDNN built in.

    For one shape (batch 1) PyTorch's dispatch sends most of these convolutions to its slow
    im2col kernel; oneDNN tensors force the fast kernel and give results that do not depend on
    the batch size (measurements: docs/ARCHITECTURE.md, 'Decisions and why', "Decoding on CPU
    goes through oneDNN").
    """
    return x.device.type == "cpu" and not torch.is_grad_enabled() and torch.backends.mkldnn.is_available()


def _inference_conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: int = 1) -> torch.Tensor:
    """:func:`_conv3d` computed by oneDNN on CPU; dense in, dense out."""
    out = F.conv3d(
        x.contiguous().to_mkldnn(), weight.contiguous().to_mkldnn(), bias.contiguous().to_mkldnn(), padding=padding
    )
    return out.to_dense()


def convolution_for(x: torch.Tensor):
    """The 3^3 convolution to use on ``x``: oneDNN for CPU inference, else the plain one."""
    return _inference_conv3d if _use_onednn(x) else _conv3d


@dataclass(frozen=True)
class BlockBatch:
    """Output blocks to decode: block b is ``[o, o + size)^3`` of shape ``shape_index[b]``.

    Attributes:
        shape_index: (nb,) int64, index into the batch of features.
        origins: (nb, 3) int64, block origins at resolution K; multiples of
            ``2 ** (L - crop_level)``.
        size: P, the block side; a multiple of ``2 ** (L - crop_level)``.
        crop_level: The level from which the decoder runs on crops (levels below run whole).
    """

    shape_index: torch.Tensor
    origins: torch.Tensor
    size: int
    crop_level: int


class Decoder(nn.Module):
    """Embedded features (B, C, K', K', K') -> TSDF-Def volumes (B, 4, K, K, K)."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        w = cfg.widths
        self.head = nn.Conv3d(cfg.feature_channels, w[0], 3, padding=1)
        firsts = [i for i in range(cfg.modules) if i == 0 or cfg.module_slot(i) > cfg.module_slot(i - 1)]
        self.ups = nn.ModuleList(nn.Conv3d(w[i], w[i + 1] * 8, 3, padding=1) for i in firsts)
        self.tail = nn.Conv3d(w[-1], 4, 3, padding=1)
        if cfg.coarse_head:
            self.coarse = nn.Conv3d(w[cfg.coarse_level], 1, 3, padding=1)

    def forward(
        self,
        features: torch.Tensor,
        specs: dict[str, QuantSpec] | None = None,
        blocks: BlockBatch | None = None,
        with_coarse: bool = False,
    ):
        """Decode features; with ``specs`` every parameter is quantized first (QAT).

        Args:
            features: (B, C, K', K', K').
            specs: Per-parameter :class:`QuantSpec` keyed by parameter name, or ``None``.
            blocks: Decode only these output blocks instead of the whole volume.
            with_coarse: Also return the coarse head's prediction (needs ``coarse_head``).

        Returns:
            (B, 4, K, K, K), or (nb, 4, P, P, P) with ``blocks``; with ``with_coarse`` a pair
            (that, coarse (B, 1, Kc, Kc, Kc)).
        """
        p = self.effective_params(specs)
        conv = convolution_for(features)
        stop = self.cfg.modules if blocks is None else blocks.crop_level
        levels = self.run_levels(features, p, conv, stop, with_coarse)
        if blocks is None:
            out = conv(levels[-1], p["tail.weight"], p["tail.bias"])
        else:
            out = self.run_blocks(levels[-1], blocks, p, conv)
        if not with_coarse:
            return out
        return out, self.coarse_prediction(levels, p, conv)

    def run_levels(
        self, features: torch.Tensor, p: dict[str, torch.Tensor], conv, stop: int, keep_coarse: bool = False
    ) -> list[torch.Tensor]:
        """The whole-grid levels: head, then modules up to level ``stop``.

        Returns:
            [x_stop] or, with ``keep_coarse``, [x_coarse, x_stop] (the same tensor twice
            when the levels coincide); x_l is (B, w_l, r_l, r_l, r_l).
        """
        if keep_coarse and stop < self.cfg.coarse_level:
            raise ValueError(f"the coarse head reads level {self.cfg.coarse_level}, crops start at {stop}")
        x = conv(features, p["head.weight"], p["head.bias"])
        kept = [x] if keep_coarse and self.cfg.coarse_level == 0 else []
        for i in range(stop):
            x = self.upsample(x, p, conv, i)
            if keep_coarse and i + 1 == self.cfg.coarse_level:
                kept.append(x)
        return kept + [x]

    def predict_coarse(self, features: torch.Tensor) -> torch.Tensor:
        """Only the coarse head: (B, C, K', K', K') -> (B, 1, Kc, Kc, Kc); the fine levels are not run."""
        p = self.effective_params(None)
        conv = convolution_for(features)
        return self.coarse_prediction(self.run_levels(features, p, conv, self.cfg.coarse_level, True), p, conv)

    def coarse_prediction(self, levels: list[torch.Tensor], p: dict[str, torch.Tensor], conv) -> torch.Tensor:
        """The coarse head on the kept coarse level: (B, 1, Kc, Kc, Kc)."""
        if not self.cfg.coarse_head:
            raise ValueError("this decoder has no coarse head")
        return conv(levels[0], p["coarse.weight"], p["coarse.bias"])

    def run_blocks(self, x: torch.Tensor, blocks: BlockBatch, p: dict[str, torch.Tensor], conv) -> torch.Tensor:
        """The fine levels on crops of ``x`` (B, w, r_c, r_c, r_c): returns (nb, 4, P, P, P)."""
        L, c = self.cfg.modules, blocks.crop_level
        x = crop_windows(x, blocks.shape_index, blocks.origins // 2 ** (L - c), blocks.size // 2 ** (L - c), halo=2)
        for i in range(c, L):
            x = self.upsample(x, p, conv, i, padding=0)
            scale = 2 ** (L - i - 1)
            x = x * outside_mask(blocks.origins // scale - 2, x.shape[-1], self.cfg.level_resolution(i + 1)).to(x.dtype)
        return conv(x[..., 1:-1, 1:-1, 1:-1], p["tail.weight"], p["tail.bias"], 0)

    def upsample(self, x: torch.Tensor, p: dict[str, torch.Tensor], conv, level: int, padding: int = 1) -> torch.Tensor:
        """Upsampling level ``level``: (B, w_l, r, r, r) -> (B, w_{l+1}, 2r, 2r, 2r) (2r - 4 when valid)."""
        slot = self.cfg.module_slot(level)
        return F.gelu(pixel_shuffle_3d(conv(x, p[f"ups.{slot}.weight"], p[f"ups.{slot}.bias"], padding), 2))

    def effective_params(self, specs: dict[str, QuantSpec] | None) -> dict[str, torch.Tensor]:
        """Every parameter by name, quantized on ``specs`` when given (QAT)."""
        params = dict(self.named_parameters())
        if specs is None:
            return params
        return {name: quantize(t, specs[name]) for name, t in params.items()}

    def quant_specs(self, bits: int, per_tensor: bool) -> dict[str, QuantSpec]:
        """Current quantization grid of every parameter."""
        return {name: symmetric_spec(t, bits, per_tensor) for name, t in self.named_parameters()}

    def param_count(self) -> int:
        """Number of scalar parameters."""
        return sum(t.numel() for t in self.parameters())
