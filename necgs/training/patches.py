"""Where patch training looks: output blocks drawn near the surface, and a share far from it.

Only a small share of a shape's nodes lie near the surface (|TSDF| < 1), and only a share of the
block positions touch that band, so a dense step spends almost all of its work where the loss is
flat (measurements: docs/ARCHITECTURE.md, 'Decisions and why', "Training where the surface is").
A :class:`BlockSampler` indexes, once per set, every aligned block position of every shape as
*band* (it holds a node with |TSDF| < tau) or *far*, then draws a budget of blocks per step: a
``band_fraction`` share from the band, the rest from the far field, so the decoder still learns
the truncated value away from the surface.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from necgs.model.decoder import BlockBatch


class BlockSampler:
    """Aligned block positions of a set of volumes, split into band and far.

    Args:
        volumes: (N, 4, K, K, K) target TSDF-Def volumes.
        size: Block side P.
        unit: Alignment of block origins (``2 ** (L - crop_level)``).
        tau: Nodes with |TSDF| < tau form the band.
    """

    def __init__(self, volumes: torch.Tensor, size: int, unit: int, tau: float = 1.0) -> None:
        K = volumes.shape[-1]
        if size > K or size % unit or K % unit:
            raise ValueError(f"block side {size} must be at most K={K} and a multiple of {unit}")
        self.size, self.unit, self.resolution = size, unit, K
        band = (volumes[:, :1].abs() < tau).float()
        touched = F.max_pool3d(band, size, stride=unit)[:, 0] > 0  # (N, g, g, g)
        self.grid = touched.shape[-1]
        flat = touched.reshape(len(volumes), -1)
        self.band = [row.nonzero()[:, 0] for row in flat]
        self.far = [(~row).nonzero()[:, 0] for row in flat]

    def band_share(self) -> float:
        """Share of all block positions that touch the band."""
        total = sum(len(b) + len(f) for b, f in zip(self.band, self.far))
        return sum(len(b) for b in self.band) / max(total, 1)

    def sample(
        self, shapes: list[int], per_shape: int, band_fraction: float, crop_level: int, generator: torch.Generator
    ) -> BlockBatch:
        """Draw ``per_shape`` blocks of each shape in ``shapes``.

        Args:
            shapes: Set indices of the shapes of this step, in batch order.
            per_shape: Blocks per shape.
            band_fraction: Probability that a block is drawn from the band (when the shape
                has both kinds).
            crop_level: Passed to the :class:`BlockBatch`.
            generator: The step's random source.

        Returns:
            Blocks whose ``shape_index`` indexes ``shapes`` (the batch), not the set.
        """
        index, origins = [], []
        for b, s in enumerate(shapes):
            draws = torch.rand(per_shape, generator=generator) < band_fraction
            for from_band in draws.tolist():
                pool = self.band[s] if (from_band and len(self.band[s])) or not len(self.far[s]) else self.far[s]
                flat = int(pool[int(torch.randint(len(pool), (1,), generator=generator))])
                origins.append(self._origin(flat))
                index.append(b)
        return BlockBatch(
            torch.tensor(index, dtype=torch.long), torch.tensor(origins, dtype=torch.long), self.size, crop_level
        )

    def _origin(self, flat: int) -> list[int]:
        g = self.grid
        return [(flat // (g * g)) * self.unit, (flat // g % g) * self.unit, (flat % g) * self.unit]


def block_targets(volumes: torch.Tensor, shapes: list[int], blocks: BlockBatch) -> torch.Tensor:
    """The target blocks (nb, 4, P, P, P) of ``volumes`` (N, 4, K, K, K) for a batch."""
    P = blocks.size
    return torch.stack(
        [
            volumes[shapes[s], :, a : a + P, b : b + P, c : c + P]
            for s, (a, b, c) in zip(blocks.shape_index.tolist(), blocks.origins.tolist())
        ]
    )


def coarse_targets(volumes: torch.Tensor, resolution: int) -> torch.Tensor:
    """The TSDF channel average-pooled to ``resolution``: (N, 1, Kc, Kc, Kc)."""
    factor = volumes.shape[-1] // resolution
    return F.avg_pool3d(volumes[:, :1], factor) if factor > 1 else volumes[:, :1].clone()
