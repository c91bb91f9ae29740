"""The paper's rendering-based fitting error (Eq. 6-8), through nvdiffrast on CUDA.

E_rec = sum over views |silhouette_dmc - silhouette_mesh|_1
        + lambda_rec * |(depth_dmc - depth_mesh) * silhouette_mesh|_1,  lambda_rec = 10,
with 4 random views per iteration. nvdiffrast is not on PyPI and needs CUDA, so this
backend is only used where both are present; elsewhere it explains what is missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from necgs.errors import DependencyError

#: Weight of the depth term (paper: 10) and views per iteration (paper: 4).
LAMBDA_REC, VIEWS = 10.0, 4


def _require_nvdiffrast():
    if not torch.cuda.is_available():
        raise DependencyError("the nvdiffrast fitting backend needs a CUDA device; use --backend points on CPU")
    try:  # imported here: nvdiffrast is optional (CUDA only, not on PyPI)
        import nvdiffrast.torch as dr
    except ImportError:
        raise DependencyError(
            "the nvdiffrast fitting backend needs nvdiffrast (not on PyPI: build it from NVlabs' repository)"
        ) from None
    return dr


def _random_views(gen: torch.Generator, device) -> torch.Tensor:
    """(VIEWS, 4, 4) orthographic-ish view-projection matrices looking at the origin."""
    mats = []
    for _ in range(VIEWS):
        yaw, pitch = (
            torch.rand(2, generator=gen) * torch.tensor([2 * math.pi, math.pi]) - torch.tensor([0, math.pi / 2])
        ).tolist()
        cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
        rot = torch.tensor([[cy, 0, sy], [sp * sy, cp, -sp * cy], [-cp * sy, sp, cp * cy]])
        m = torch.eye(4)
        m[:3, :3] = rot / 1.8
        m[2, 3] = 0.0
        mats.append(m)
    return torch.stack(mats).to(device)


def _render(dr, ctx, verts: torch.Tensor, faces: torch.Tensor, views: torch.Tensor, res: int = 256):
    homo = torch.cat([verts, torch.ones_like(verts[:, :1])], 1)
    clip = homo @ views.transpose(1, 2)  # (VIEWS, V, 4)
    tri = faces.int().contiguous()
    rast, _ = dr.rasterize(ctx, clip.contiguous(), tri, (res, res))
    depth, _ = dr.interpolate(clip[..., 2:3].contiguous(), rast, tri)
    mask = (rast[..., 3:] > 0).float()
    mask = dr.antialias(mask, rast, clip, tri)
    return mask, depth


def rendering_error(
    vertices: np.ndarray, faces: np.ndarray, seed: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The rendering error of a DMC mesh against one target mesh, on the CUDA device.

    Args:
        vertices: (V, 3) target mesh vertices in the grid frame.
        faces: (F, 3) target triangles.
        seed: Seed of the random views drawn at every call.

    Returns:
        ``error(v, f)``: E_rec between the (V', 3)/(F', 3) DMC mesh (on CUDA) and the target,
        rendered from :data:`VIEWS` new random views.

    Raises:
        DependencyError: No CUDA device, or nvdiffrast is not installed.
    """
    dr = _require_nvdiffrast()
    device = torch.device("cuda")
    ctx = dr.RasterizeCudaContext()
    gt_v = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    gt_f = torch.as_tensor(faces, dtype=torch.int64, device=device)
    gen = torch.Generator().manual_seed(seed)

    def error(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        views = _random_views(gen, device)
        m_pred, d_pred = _render(dr, ctx, v, f, views)
        with torch.no_grad():
            m_gt, d_gt = _render(dr, ctx, gt_v, gt_f, views)
        return (m_pred - m_gt).abs().mean() + LAMBDA_REC * ((d_pred - d_gt) * m_gt).abs().mean()

    return error
