"""Decoding blocks of the output volume instead of all of it: crops, costs, sparse decoding.

The decoder's coarse levels are cheap and its last two convolutions (the last upsampling
module at K/2 and the tail at K) cost nearly all of a dense decode (measurements:
docs/ARCHITECTURE.md, 'Decisions and why', "Training where the surface is"). Training on a
budget of output blocks near the surface and decoding only the blocks that hold it both
run the coarse levels whole and the fine ones on halo-padded crops
(:meth:`necgs.model.decoder.Decoder.run_blocks`). A crop starting at level ``c`` needs the
block origins and side to be multiples of ``2 ** (L - c)``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from necgs.model.decoder import BlockBatch, Decoder, DecoderConfig, convolution_for


def block_macs(cfg: DecoderConfig, crop_level: int, shapes: int, blocks: int, size: int) -> int:
    """Multiply-accumulates of one forward pass: ``shapes`` whole up to ``crop_level``, then blocks."""
    w, L = cfg.widths, cfg.modules
    macs = shapes * cfg.feature_resolution**3 * cfg.feature_channels * w[0] * 27
    for i in range(L):
        out = 8 * w[i + 1] * w[i] * 27
        if i < crop_level:
            macs += shapes * cfg.level_resolution(i) ** 3 * out
        else:
            macs += blocks * (size // 2 ** (L - i) + 2) ** 3 * out
    return macs + blocks * size**3 * w[-1] * 4 * 27


def crop_levels(cfg: DecoderConfig, size: int, need_coarse: bool) -> list[int]:
    """Levels a crop of blocks of side ``size`` may start from."""
    L = cfg.modules
    first = cfg.coarse_level if need_coarse else 0
    return [c for c in range(first, L) if size % 2 ** (L - c) == 0 and size // 2 ** (L - c) >= 1]


def best_crop_level(cfg: DecoderConfig, size: int, shapes: int, blocks: int, need_coarse: bool) -> int:
    """The crop level with the fewest multiply-accumulates for this budget."""
    levels = crop_levels(cfg, size, need_coarse)
    if not levels:
        raise ValueError(f"block side {size} does not divide the decoder's levels at K={cfg.resolution}")
    return min(levels, key=lambda c: block_macs(cfg, c, shapes, blocks, size))


def active_blocks(coarse: torch.Tensor, cfg: DecoderConfig, size: int, margin: int, threshold: float) -> torch.Tensor:
    """Which output blocks may hold surface, from the coarse TSDF.

    Args:
        coarse: (1, 1, Kc, Kc, Kc) coarse head prediction.
        cfg: The decoder's architecture.
        size: Output block side P (a multiple of K / Kc).
        margin: Coarse cells of dilation around the near-surface cells.
        threshold: Coarse cells with |TSDF| below this count as near the surface.

    Returns:
        (K/P, K/P, K/P) bool.
    """
    f = cfg.resolution // cfg.coarse_resolution
    near = (coarse.abs() < threshold).float()
    if margin:
        near = F.max_pool3d(near, 2 * margin + 1, stride=1, padding=margin)
    return F.max_pool3d(near, size // f, stride=size // f)[0, 0] > 0


def decode_sparse(
    decoder: Decoder, features: torch.Tensor, size: int = 16, margin: int = 1, threshold: float = 0.6, chunk: int = 16
) -> torch.Tensor:
    """Decode one shape, running the fine levels only on blocks near the coarse surface.

    Blocks far from the surface get the coarse sign as their TSDF (+-1) and no deformation.
    Where the blocks found hold no surface (a coarse head left "outside everywhere" by a short
    training, while the fine levels already decode a surface elsewhere), the shape is decoded
    densely instead of coming out empty: sparse decoding only ever saves time.

    Args:
        decoder: A decoder with a coarse head (dequantized weights, inference).
        features: (1, C, K', K', K').
        size: Output block side P (a multiple of K / Kc and dividing K).
        margin: Coarse cells of dilation (safety margin) around the near-surface cells.
        threshold: Coarse |TSDF| below which a cell counts as near the surface; well under 1,
            because a lightly trained coarse head's far field sits near 1, yet high enough to
            keep every block the dense decode's mesh needs (measurements: docs/ARCHITECTURE.md,
            'Decisions and why', "Coarse head and block-sparse decoding").
        chunk: Blocks decoded per forward pass.

    Returns:
        (1, 4, K, K, K).
    """
    cfg = decoder.cfg
    K = cfg.resolution
    if not cfg.coarse_head:
        raise ValueError("sparse decoding needs a decoder with a coarse head")
    if K % size or size % (K // cfg.coarse_resolution):
        raise ValueError(f"block side {size} must divide K={K} and be a multiple of {K // cfg.coarse_resolution}")
    with torch.no_grad():
        p = decoder.effective_params(None)
        conv = convolution_for(features)
        first = min(crop_levels(cfg, size, need_coarse=True))
        levels = decoder.run_levels(features, p, conv, first, keep_coarse=True)
        coarse = decoder.coarse_prediction(levels, p, conv)
        active = active_blocks(coarse, cfg, size, margin, threshold)
        idx = active.nonzero()
        n_active = len(idx)
        crop = best_crop_level(cfg, size, 1, n_active, need_coarse=True)
        x = levels[-1] if crop == first else decoder.run_levels(features, p, conv, crop)[-1]
        out = coarse.new_zeros((1, 4, K, K, K))
        f, kc = K // cfg.coarse_resolution, cfg.coarse_resolution
        sign = torch.where(coarse[0, 0] >= 0, 1.0, -1.0)[:, None, :, None, :, None]
        out[0, 0].view(kc, f, kc, f, kc, f).copy_(sign.expand(kc, f, kc, f, kc, f))
        origins = idx * size
        for k in range(0, n_active, chunk):
            o = origins[k : k + chunk]
            blocks = BlockBatch(torch.zeros(len(o), dtype=torch.long), o, size, crop)
            dec = decoder.run_blocks(x, blocks, p, conv)
            for b, (i, j, k) in enumerate(o.tolist()):
                out[0, :, i : i + size, j : j + size, k : k + size] = dec[b]
        if not out[0, 0].min() < 0 < out[0, 0].max():
            return decoder(features)
    return out


def decode_volume(decoder: Decoder, features: torch.Tensor, sparse: bool = True) -> torch.Tensor:
    """Decode one shape: block-sparse when asked and the decoder has a coarse head, else dense.

    Args:
        decoder: The (dequantized) decoder.
        features: (1, C, K', K', K').
        sparse: Prefer block-sparse decoding.

    Returns:
        (1, 4, K, K, K).
    """
    size = sparse_block_size(decoder.cfg)
    if sparse and size is not None:
        return decode_sparse(decoder, features, size)
    with torch.no_grad():
        return decoder(features)


def sparse_block_size(cfg: DecoderConfig) -> int | None:
    """The output block side sparse decoding uses (K/8), or None where dense decoding is kept.

    Each block recomputes a halo at the fine levels (a 16^3 block needs a 12^3 window at K/2,
    3.4x its core), so skipping the far field pays only where the surface is a small share of
    the blocks: from K = 128 on. K = 64 stays dense: it already decodes fast, and every K = 64
    result in benchmarks/ was measured on the dense decode (measurements: docs/ARCHITECTURE.md,
    'Decisions and why', "Coarse head and block-sparse decoding").
    """
    if cfg.resolution < 128 or not cfg.coarse_head:
        return None
    return max(cfg.resolution // 8, cfg.resolution // cfg.coarse_resolution)
