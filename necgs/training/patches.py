"""Where patch training looks: output blocks drawn near the surface, and a share far from it.

Only a small share of a shape's nodes lie near the surface (|TSDF| < 1), and only a share of the
block positions touch that band, so a dense step spends almost all of its work where the loss is
flat (measurements: docs/ARCHITECTURE.md, 'Decisions and why', "Training where the surface is").
A :class:`BlockSampler` indexes, once per set, every aligned block position of every shape as
*band* (it holds a node with |TSDF| < tau) or *far*, then draws a budget of blocks per step: a
``band_fraction`` share from the band, the rest from the far field, so the decoder still learns
the truncated value away from the surface.

Both read the set's volumes as blocks (:class:`necgs.geometry.block_volume.VolumeSet`): the
sampler keeps only each shape's band positions, and a target block is cut from the stored blocks
it overlaps, so the memory grows with the band rather than N x K^3; a dense tensor is split first.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from necgs.geometry.block_volume import Volumes
from necgs.model.decoder import BlockBatch


class BlockSampler:
    """Aligned block positions of a set of volumes, split into band and far.

    Per shape it keeps the sorted band positions (int32) and the number of positions; the k-th far
    position is found from them (:meth:`_far`), so the index grows with the band, and the draws
    are those of lists of both kinds.

    Args:
        volumes: (N, 4, K, K, K) target TSDF-Def volumes, dense or as blocks.
        size: Block side P.
        unit: Alignment of block origins (``2 ** (L - crop_level)``).
        tau: Nodes with |TSDF| < tau form the band.
    """

    def __init__(self, volumes: Volumes, size: int, unit: int, tau: float = 1.0) -> None:
        K = volumes.shape[-1]
        if size > K or size % unit or K % unit:
            raise ValueError(f"block side {size} must be at most K={K} and a multiple of {unit}")
        self.size, self.unit, self.resolution = size, unit, K
        self.grid = (K - size) // unit + 1
        self.band: list[np.ndarray] = []
        for i in range(len(volumes)):
            band = (tsdf_of(volumes, i).abs() < tau).float()[None, None]
            touched = F.max_pool3d(band, size, stride=unit)[0, 0] > 0  # (g, g, g)
            self.band.append(touched.reshape(-1).nonzero()[:, 0].numpy().astype(np.int32))
        self.positions = self.grid**3
        # position of the k-th far block: k + (the band positions b_j with b_j - j <= k)
        self._gaps = [b - np.arange(len(b), dtype=np.int32) for b in self.band]

    def band_share(self) -> float:
        """Share of all block positions that touch the band."""
        total = self.positions * len(self.band)
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
            band, far = len(self.band[s]), self.positions - len(self.band[s])
            for from_band in draws.tolist():
                in_band = (from_band and band) or not far
                k = int(torch.randint(band if in_band else far, (1,), generator=generator))
                origins.append(self._origin(int(self.band[s][k]) if in_band else self._far(s, k)))
                index.append(b)
        return BlockBatch(
            torch.tensor(index, dtype=torch.long), torch.tensor(origins, dtype=torch.long), self.size, crop_level
        )

    def _far(self, shape: int, k: int) -> int:
        """The k-th (0-based) position of ``shape`` that is not in its band."""
        return k + int(np.searchsorted(self._gaps[shape], k, side="right"))

    def _origin(self, flat: int) -> list[int]:
        g = self.grid
        return [(flat // (g * g)) * self.unit, (flat // g % g) * self.unit, (flat % g) * self.unit]


def block_targets(volumes: Volumes, shapes: list[int], blocks: BlockBatch) -> torch.Tensor:
    """The target blocks (nb, 4, P, P, P) of ``volumes`` (N, 4, K, K, K; dense or as blocks) for a batch."""
    P = blocks.size
    pairs = zip(blocks.shape_index.tolist(), blocks.origins.tolist())
    if isinstance(volumes, torch.Tensor):
        return torch.stack([volumes[shapes[s], :, a : a + P, b : b + P, c : c + P] for s, (a, b, c) in pairs])
    return torch.stack([volumes.crop(shapes[s], origin, P) for s, origin in pairs])


def coarse_targets(volumes: Volumes, resolution: int) -> torch.Tensor:
    """The TSDF channel average-pooled to ``resolution``: (N, 1, Kc, Kc, Kc), one shape at a time."""
    factor = volumes.shape[-1] // resolution
    out = torch.empty((len(volumes), 1, resolution, resolution, resolution))
    for i in range(len(volumes)):
        tsdf = tsdf_of(volumes, i)[None, None]
        out[i] = F.avg_pool3d(tsdf, factor)[0] if factor > 1 else tsdf[0]
    return out


def tsdf_of(volumes: Volumes, i: int) -> torch.Tensor:
    """Shape ``i``'s TSDF channel (K, K, K) of a dense tensor or a volume set."""
    return volumes[i, 0] if isinstance(volumes, torch.Tensor) else volumes.tsdf(i)
