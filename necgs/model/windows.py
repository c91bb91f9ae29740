"""Windows of whole-grid tensors, the pieces block decoding runs the fine levels on.

A block's window at a level is its core plus a halo of zeros where it reaches past the grid
(:meth:`necgs.model.decoder.Decoder.run_blocks`); :func:`outside_mask` tells which positions
of a window lie inside the grid, so convolutions keep the dense decode's zero padding.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def crop_windows(
    x: torch.Tensor, shape_index: torch.Tensor, starts: torch.Tensor, size: int, halo: int
) -> torch.Tensor:
    """Cut ``[s - halo, s + size + halo)^3`` windows out of zero-padded whole-grid tensors.

    Args:
        x: (S, C, r, r, r) one level of S shapes.
        shape_index: (nb,) which shape each window comes from.
        starts: (nb, 3) window cores' first voxel, in level coordinates.
        size: Side of each window's core.
        halo: Voxels added on each side (zeros outside the grid).

    Returns:
        (nb, C, size + 2 halo, ...).
    """
    padded = F.pad(x, (halo,) * 6)
    side = size + 2 * halo
    crops = [
        padded[int(s), :, a : a + side, b : b + side, c : c + side]
        for s, (a, b, c) in zip(shape_index.tolist(), starts.tolist())
    ]
    return torch.stack(crops)


def outside_mask(starts: torch.Tensor, side: int, resolution: int) -> torch.Tensor:
    """(nb, 1, side, side, side) bool: which positions of each window lie inside the grid.

    Args:
        starts: (nb, 3) first voxel of each window (may be negative).
        side: Window side.
        resolution: Side of the grid.
    """
    pos = starts[:, :, None] + torch.arange(side, device=starts.device)  # (nb, 3, side)
    inside = (pos >= 0) & (pos < resolution)
    m = inside[:, 0, :, None, None] & inside[:, 1, None, :, None] & inside[:, 2, None, None, :]
    return m[:, None]
