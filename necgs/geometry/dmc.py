"""Differentiable Deformable Marching Cubes (DMC), in plain PyTorch.

Grid nodes sit at -1 + 2 i / (K - 1) on each axis and may be displaced by per-node
offsets; each cube edge whose end values straddle the iso level gets one vertex, placed
by linear interpolation of the field between the two *deformed* end points:

    p = p_a + t (p_b - p_a),   t = (iso - s_a) / (s_b - s_a).

Vertices are shared between the cubes of an edge (edges are named by arithmetic ids:
``axis * K^3 + linear index of the lower node``), so a closed field gives a closed mesh.
Everything is vectorized over the cubes with a sign change; gradients flow to the field
values and to the offsets through ``t`` and the end points. Runs on any torch device.
"""

from __future__ import annotations

import numpy as np
import torch

from necgs.errors import ConfigError
from necgs.geometry.mc_tables import CORNERS, EDGE_AXIS, EDGES, triangle_table
from necgs.io.mesh import Mesh

_TABLES: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(256, T, 3) triangle table, (12, 3) lower-corner offsets, (12,) edge axes on ``device``."""
    if device not in _TABLES:
        _TABLES[device] = (
            torch.as_tensor(triangle_table(), device=device),
            torch.as_tensor(CORNERS[EDGES[:, 0]], device=device),
            torch.as_tensor(EDGE_AXIS, device=device),
        )
    return _TABLES[device]


def grid_coordinates(K: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Node coordinates of the K^3 grid over [-1, 1]^3.

    Returns:
        (K, K, K, 3) tensor; entry [i, j, k] is (x_i, y_j, z_k) with x_i = -1 + 2 i / (K - 1).
    """
    axis = torch.linspace(-1.0, 1.0, K, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)


def _separable_to_table_codes() -> torch.Tensor:
    """(256,) int64 map from a separable code (bit dz + 2 dy + 4 dx) to the table's corner order."""
    remap = torch.zeros(256, dtype=torch.int64)
    for s in range(256):
        remap[s] = sum(1 << c for c, (dx, dy, dz) in enumerate(CORNERS.tolist()) if s >> (dz + 2 * dy + 4 * dx) & 1)
    return remap


_REMAP = _separable_to_table_codes()


def _crossing_cubes(inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The cubes with a sign change and their case indices, from the (K, K, K) inside mask.

    The 8-bit code is built in three separable uint8 passes (z, then y, then x pairs of
    nodes), several times cheaper than one int64 shift per corner; only the crossing cubes are
    then mapped to the triangle table's corner order (measurements: docs/ARCHITECTURE.md,
    'Decisions and why', "DMC's cube codes").

    Returns:
        cells (M, 3) int64 lower-node indices and codes (M,) int64 in 1..254.
    """
    o = inside.to(torch.uint8)
    z = o[:, :, :-1] | (o[:, :, 1:] << 1)
    y = z[:, :-1] | (z[:, 1:] << 2)
    code = y[:-1] | (y[1:] << 4)
    cells = torch.nonzero((code != 0) & (code != 255))
    separable = code[cells[:, 0], cells[:, 1], cells[:, 2]].long()
    return cells, _REMAP.to(inside.device)[separable]


def _active_edges(tsdf: torch.Tensor, iso: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Global ids of the crossing edges used by triangles, and (F, 3) faces indexing them."""
    K = tsdf.shape[0]
    table, lower, axes = _tables(tsdf.device)
    cells, codes = _crossing_cubes(tsdf < iso)  # (M, 3), (M,)
    tris = table[codes]  # (M, T, 3)
    valid = tris[:, :, 0] >= 0
    cell_of_tri = cells[:, None, :].expand(-1, tris.shape[1], -1)[valid]  # (F, 3)
    tri_edges = tris[valid]  # (F, 3) local edge ids
    nodes = cell_of_tri[:, None, :] + lower[tri_edges]  # (F, 3, 3) lower node of each edge
    linear = (nodes[..., 0] * K + nodes[..., 1]) * K + nodes[..., 2]
    global_ids = axes[tri_edges] * K**3 + linear
    edge_ids, faces = torch.unique(global_ids.reshape(-1), return_inverse=True)
    return edge_ids, faces.reshape(-1, 3)


def deformable_marching_cubes(
    tsdf: torch.Tensor, offsets: torch.Tensor | None = None, iso: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Extract the iso-surface of a field on a deformable grid.

    Args:
        tsdf: (K, K, K) field values on the grid nodes, negative inside.
        offsets: (K, K, K, 3) node displacements in world units (the caller bounds them),
            or ``None`` for the regular grid.
        iso: The iso level.

    Returns:
        vertices (V, 3) in the dtype of ``tsdf`` (differentiable w.r.t. ``tsdf`` and
        ``offsets``) and faces (F, 3) int64, oriented with normals pointing outward
        (towards values above ``iso``). Both are empty when the surface is.

    Raises:
        ConfigError: On wrong shapes.
    """
    if tsdf.dim() != 3 or len(set(tsdf.shape)) != 1 or tsdf.shape[0] < 2:
        raise ConfigError(f"tsdf must be a (K, K, K) tensor with K >= 2, got {tuple(tsdf.shape)}")
    K = tsdf.shape[0]
    if offsets is not None and tuple(offsets.shape) != (K, K, K, 3):
        raise ConfigError(f"offsets must have shape {(K, K, K, 3)}, got {tuple(offsets.shape)}")
    edge_ids, faces = _active_edges(tsdf.detach(), iso)
    if edge_ids.numel() == 0:
        return tsdf.new_zeros((0, 3)), torch.zeros((0, 3), dtype=torch.int64, device=tsdf.device)
    axis = edge_ids // K**3
    a = edge_ids % K**3
    b = a + torch.tensor([K * K, K, 1], device=tsdf.device)[axis]
    flat = tsdf.reshape(-1)
    s_a, s_b = flat[a], flat[b]
    t = ((iso - s_a) / (s_b - s_a)).clamp(0.0, 1.0)
    step = 2.0 / (K - 1)
    p_a = _node_positions(a, K, step, tsdf.dtype)
    p_b = _node_positions(b, K, step, tsdf.dtype)
    if offsets is not None:
        off = offsets.reshape(-1, 3)
        p_a, p_b = p_a + off[a], p_b + off[b]
    vertices = p_a + t[:, None] * (p_b - p_a)
    return vertices, faces


def _node_positions(linear: torch.Tensor, K: int, step: float, dtype: torch.dtype) -> torch.Tensor:
    ijk = torch.stack((linear // (K * K), (linear // K) % K, linear % K), dim=1)
    return ijk.to(dtype) * step - 1.0


def volume_offsets(volume: torch.Tensor) -> torch.Tensor:
    """Node offsets in world units from a TSDF-Def volume's deformation channels.

    Args:
        volume: (4, K, K, K); channels 1..3 are deformations in half-voxel units.

    Returns:
        (K, K, K, 3) offsets = 0.5 * h * clamp(channels, -1, 1), h = 2 / (K - 1).
    """
    K = volume.shape[-1]
    return (0.5 * (2.0 / (K - 1))) * volume[1:4].clamp(-1.0, 1.0).permute(1, 2, 3, 0)


def volume_to_mesh(volume: torch.Tensor, deform: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """DMC of a TSDF-Def volume (4, K, K, K) -> vertices (V, 3), faces (F, 3) in the grid frame."""
    if volume.dim() != 4 or volume.shape[0] != 4:
        raise ConfigError(f"a TSDF-Def volume has shape (4, K, K, K), got {tuple(volume.shape)}")
    return deformable_marching_cubes(volume[0], volume_offsets(volume) if deform else None)


def mesh_from_volume(volume: torch.Tensor, name: str = "", deform: bool = True) -> Mesh:
    """Detached NumPy :class:`Mesh` (grid frame) of a TSDF-Def volume (4, K, K, K)."""
    with torch.no_grad():
        v, f = volume_to_mesh(volume, deform=deform)
    return Mesh(v.cpu().numpy().astype(np.float64), f.cpu().numpy(), name)
