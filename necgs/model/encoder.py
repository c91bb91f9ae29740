"""The auto-encoder ablation (paper Sec. 4.3, appendix C.3): a 3D ConvNeXt-style encoder.

Instead of free per-shape features, an encoder maps each TSDF-Def volume (4, K, K, K) to
its feature (C, K', K', K'). Only the encoder's *outputs* go into the archive (quantized
like the auto-decoder's features); the decoder is unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn


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
    """(B, 4, K, K, K) volumes -> (B, C, K', K', K') features by strided stages."""

    def __init__(self, resolution: int, feature_resolution: int, feature_channels: int, width: int = 16) -> None:
        super().__init__()
        stages = int(round(math.log2(resolution // feature_resolution)))
        layers: list[nn.Module] = [nn.Conv3d(4, width, 3, padding=1)]
        for _ in range(stages):
            layers += [ConvNeXtBlock3d(width), nn.Conv3d(width, width, 2, stride=2)]
        layers.append(nn.Conv3d(width, feature_channels, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:
        """Encode volumes into features."""
        return self.net(volumes)
