"""A 3D ConvNeXt-style volume encoder: the auto-encoder ablation and the priors' encoder.

In the ablation (paper Sec. 4.3, appendix C.3) the encoder maps each TSDF-Def volume
(4, K, K, K) to its feature (C, K', K', K') instead of free per-shape features; only its
*outputs* go into the archive (quantized like the auto-decoder's features). A prior ships an
encoder that first average-pools the volume to a coarse grid (``input_resolution``): it gives
new shapes their starting feature (:mod:`necgs.priors`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from necgs.errors import ConfigError


class ConvNeXtBlock3d(nn.Module):
    """Depthwise 5^3 conv -> LayerNorm -> pointwise MLP (x4) -> residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dw = nn.Conv3d(channels, channels, 5, padding=2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) -> same shape."""
        y = self.dw(x).permute(0, 2, 3, 4, 1)
        return x + self.mlp(self.norm(y)).permute(0, 4, 1, 2, 3)


class VolumeEncoder(nn.Module):
    """(B, 4, K, K, K) volumes -> (B, C, K', K', K') features by strided stages.

    Args:
        resolution: K of the volumes.
        feature_resolution: K' of the features.
        feature_channels: C of the features.
        width: Channels of the stages.
        input_resolution: Average-pool the volumes to this side first (None: K), which makes
            an auto-encoder training step many times cheaper (measurements: docs/ARCHITECTURE.md,
            "Priors", "Start features").

    Raises:
        ConfigError: An input resolution that does not divide K or is below K'.
    """

    def __init__(
        self,
        resolution: int,
        feature_resolution: int,
        feature_channels: int,
        width: int = 16,
        input_resolution: int | None = None,
    ) -> None:
        super().__init__()
        inner = input_resolution or resolution
        if not feature_resolution <= inner <= resolution or resolution % inner:
            raise ConfigError(f"encoder input resolution {inner} must divide K = {resolution} and be >= K'")
        stages = int(round(math.log2(inner // feature_resolution)))
        layers: list[nn.Module] = [nn.AvgPool3d(resolution // inner)] if inner < resolution else []
        layers.append(nn.Conv3d(4, width, 3, padding=1))
        for _ in range(stages):
            layers += [ConvNeXtBlock3d(width), nn.Conv3d(width, width, 2, stride=2)]
        layers.append(nn.Conv3d(width, feature_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:
        """Encode volumes into features."""
        return self.net(volumes)
