"""The regression loss of the paper (Eq. 3) and its 3D SSIM term.

L = |V^ - V|_1 + lambda1 |M * (V^ - V)|_1 + lambda2 (1 - SSIM(V^, V)),
M = 1(|TSDF| < tau). As in the authors' code, SSIM is taken on the TSDF channel and on the
deformation channels separately (values mapped from [-1, 1] to [0, 1]) with a 5^3
Gaussian window, sigma 1.5.

On a CPU the SSIM term costs more than the decoder itself, so training may take it on a cube
of the volume around the surface, drawn anew each step (``ssim_crop``, a fraction of the side;
the same cube for the whole batch): an eighth of the cost for half the side (measurements:
docs/ARCHITECTURE.md, 'Decisions and why', "SSIM on a near-surface cube").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

_C1, _C2 = 0.01**2, 0.03**2


def _gaussian(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, D, H, W), valid padding."""
    c = x.shape[1]
    k = g.numel()
    for shape in ((k, 1, 1), (1, k, 1), (1, 1, k)):
        x = F.conv3d(x, g.reshape(1, 1, *shape).expand(c, 1, *shape), groups=c)
    return x


def ssim3d(a: torch.Tensor, b: torch.Tensor, window: int = 5, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of two (B, C, D, H, W) volumes with values in [0, 1]."""
    g = _gaussian(window, sigma, a.device, a.dtype)
    mu_a, mu_b = _blur(a, g), _blur(b, g)
    var_a = _blur(a * a, g) - mu_a**2
    var_b = _blur(b * b, g) - mu_b**2
    cov = _blur(a * b, g) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2)
    return (num / den).mean()


@dataclass(frozen=True)
class LossWeights:
    """Weights of Eq. 3: lambda1 (near-surface L1), lambda2 (SSIM), tau (mask threshold).

    ``deform_weight`` scales the three deformation channels against the TSDF channel in
    every term (1: Eq. 3 as the paper writes it, all four channels alike).
    """

    lambda1: float = 5.0
    lambda2: float = 10.0
    tau: float = 1.0
    use_ssim: bool = True
    ssim_crop: float = 1.0
    deform_weight: float = 1.0


def random_cube(
    pred: torch.Tensor, target: torch.Tensor, fraction: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same cube of side ``fraction * K`` (at least 9) cut from both (B, C, K, K, K) volumes.

    The cube is centred (then shifted inside the grid) on a random node of the batch's
    near-surface band (|TSDF| < 1), where the structure SSIM measures is; uniform cubes mostly
    fall in empty space and train worse (measurements: docs/ARCHITECTURE.md, 'Decisions and why',
    "SSIM on a near-surface cube").
    """
    K = pred.shape[-1]
    side = min(K, max(9, round(fraction * K)))
    if side == K:
        return pred, target
    band = (target[:, 0].abs() < 1).nonzero()
    if len(band):
        centre = band[int(torch.randint(len(band), (1,), generator=generator))][1:].tolist()
    else:
        centre = torch.randint(0, K, (3,), generator=generator).tolist()
    o = [min(max(c - side // 2, 0), K - side) for c in centre]
    cut = (..., slice(o[0], o[0] + side), slice(o[1], o[1] + side), slice(o[2], o[2] + side))
    return pred[cut], target[cut]


def volume_loss(
    pred: torch.Tensor, target: torch.Tensor, w: LossWeights, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Eq. 3 on a batch of TSDF-Def volumes (B, 4, K, K, K); returns a scalar.

    Args:
        pred: (B, 4, K, K, K) decoded volumes.
        target: (B, 4, K, K, K) fitted volumes.
        w: Loss weights and the SSIM crop fraction.
        generator: Draws the SSIM cube when ``w.ssim_crop < 1``.
    """
    err = (pred - target).abs()
    if w.deform_weight != 1.0:
        channel = torch.tensor([1.0] + [w.deform_weight] * (pred.shape[1] - 1), dtype=pred.dtype, device=pred.device)
        err = err * channel.view(1, -1, 1, 1, 1)
    mask = (target[:, :1].abs() < w.tau).to(pred.dtype)
    loss = err.mean() + w.lambda1 * (err * mask).mean()
    if w.use_ssim and w.lambda2 > 0:
        pred, target = random_cube(pred, target, w.ssim_crop, generator)
        p01, t01 = (pred.clamp(-1, 1) + 1) / 2, (target + 1) / 2
        tsdf, deform = ssim3d(p01[:, :1], t01[:, :1]), ssim3d(p01[:, 1:], t01[:, 1:])
        loss = loss + w.lambda2 * ((1.0 - tsdf) + w.deform_weight * (1.0 - deform))
    return loss


#: Most (block, decoded vertex, target vertex) distances one chunk of the surface term holds.
_SURFACE_CHUNK = 1 << 24


def surface_loss(pred: torch.Tensor, target: torch.Tensor, deform: bool = True) -> torch.Tensor:
    """Symmetric point-to-surface distance between the DMC surfaces of decoded and target blocks.

    Eq. 3 weighs every voxel of the band alike, yet the metric only sees where the surface comes
    out: each block's surface vertices are those the differentiable DMC
    (:func:`necgs.geometry.dmc.deformable_marching_cubes`) places from the decoded TSDF and
    deformation, and they are pulled onto the target block's surface vertices (a Chamfer distance
    in voxel units, both ways), so the gradient reaches the TSDF values and offsets that place the
    surface. Blocks where either surface is empty add nothing (the L1 terms handle them).

    The DMC's vertices are exactly the crossing points of the grid edges whose ends straddle 0
    (each such edge borders cubes that all use it), so they are found for all blocks at once
    (:func:`edge_crossings`) instead of running the DMC block by block: the same loss and
    gradient (a unit test compares them) at 2.4-4x less time (benchmarks/results/surface_term.json).

    Args:
        pred: (nb, 4, P, P, P) decoded blocks (or volumes).
        target: (nb, 4, P, P, P) their targets.
        deform: Displace the grid nodes by the deformation channels (TSDF-Def).

    Returns:
        A scalar: the mean over the blocks with both surfaces of their two-way mean distance
        (0, with a gradient of zeros, where no block has both).
    """
    nb = pred.shape[0]
    got, got_valid = _by_block(*edge_crossings(pred, deform), nb)
    ref, ref_valid = _by_block(*edge_crossings(target.detach(), deform), nb)
    both = got_valid.any(1) & ref_valid.any(1)
    if not both.any():
        return pred.sum() * 0.0
    got, got_valid, ref, ref_valid = got[both], got_valid[both], ref[both], ref_valid[both]
    chunk = max(_SURFACE_CHUNK // (got.shape[1] * ref.shape[1]), 1)
    terms = []
    for k in range(0, got.shape[0], chunk):
        g, gv, r, rv = got[k : k + chunk], got_valid[k : k + chunk], ref[k : k + chunk], ref_valid[k : k + chunk]
        dist = torch.cdist(g, r, compute_mode="donot_use_mm_for_euclid_dist")  # (b, Vp, Vt), exact near 0
        far = torch.finfo(dist.dtype).max
        to_ref = dist.masked_fill(~rv[:, None, :], far).min(2).values  # (b, Vp)
        to_got = dist.masked_fill(~gv[:, :, None], far).min(1).values  # (b, Vt)
        terms.append((to_ref * gv).sum(1) / gv.sum(1) + (to_got * rv).sum(1) / rv.sum(1))
    return torch.cat(terms).mean()


def edge_crossings(blocks: torch.Tensor, deform: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The DMC vertices of every block: where each grid edge whose ends straddle 0 crosses it.

    Args:
        blocks: (nb, 4, P, P, P) TSDF-Def blocks (TSDF channel first, then the deformations in
            half-voxel units, as :func:`necgs.geometry.dmc.volume_offsets` reads them).
        deform: Displace the grid nodes by the deformation channels.

    Returns:
        The block of each vertex (E,) int64 and the vertices (E, 3) in voxel units of the block
        (node (i, j, k) at (i, j, k) before its displacement), differentiable w.r.t. ``blocks``.
    """
    tsdf = blocks[:, 0]
    nb, side = tsdf.shape[0], tsdf.shape[-1]
    axis = torch.arange(side, dtype=tsdf.dtype, device=tsdf.device)
    nodes = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).expand(nb, -1, -1, -1, -1)
    if deform:
        nodes = nodes + 0.5 * blocks[:, 1:4].clamp(-1.0, 1.0).permute(0, 2, 3, 4, 1)
    inside = tsdf.detach() < 0
    owners, vertices = [], []
    for dim in (1, 2, 3):
        lower = (slice(None),) * dim + (slice(0, side - 1),)
        upper = (slice(None),) * dim + (slice(1, side),)
        crossing = inside[lower] != inside[upper]  # (nb, ...) edges along this axis
        s_a, s_b = tsdf[lower][crossing], tsdf[upper][crossing]
        p_a, p_b = nodes[lower][crossing], nodes[upper][crossing]
        t = (-s_a / (s_b - s_a)).clamp(0.0, 1.0)
        vertices.append(p_a + t[:, None] * (p_b - p_a))
        owners.append(crossing.nonzero()[:, 0])
    return torch.cat(owners), torch.cat(vertices)


def _by_block(owner: torch.Tensor, vertices: torch.Tensor, nb: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices grouped by block and padded: (nb, Vmax, 3) and which of them are real (nb, Vmax)."""
    counts = torch.bincount(owner, minlength=nb)
    order = torch.argsort(owner, stable=True)
    owner, vertices = owner[order], vertices[order]
    slot = torch.arange(len(owner), device=owner.device) - (torch.cumsum(counts, 0) - counts)[owner]
    most = max(int(counts.max()), 1) if len(owner) else 1
    padded = vertices.new_zeros((nb, most, 3)).index_put((owner, slot), vertices)
    valid = torch.zeros((nb, most), dtype=torch.bool, device=owner.device)
    valid[owner, slot] = True
    return padded, valid
