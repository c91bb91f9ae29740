"""Differentiable Deformable Marching Cubes (DMC), in plain PyTorch.

Grid nodes sit at -1 + 2 i / (K - 1) on each axis and may be displaced by per-node
offsets; each cube edge whose end values straddle the iso level gets one vertex, placed
by linear interpolation of the field between the two *deformed* end points:

    p = p_a + t (p_b - p_a),   t = (iso - s_a) / (s_b - s_a).

Vertices are shared between the cubes of an edge (edges are named by arithmetic ids:
``axis * K^3 + linear index of the lower node``), so a closed field gives a closed mesh.
Everything is vectorized over the cubes with a sign change; gradients flow to the field
values and to the offsets through ``t`` and the end points. Runs on any torch device.

:func:`band_marching_cubes` does the same on the cubes of a :class:`Band` of nodes, from
values at those nodes only, and gives the same mesh wherever the surface stays in the band:
fitting at K = 128 then costs what the band costs, not K^3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from necgs.errors import ConfigError
from necgs.geometry.mc_tables import CORNERS, EDGE_AXIS, EDGES, triangle_table
from necgs.io.mesh import Mesh

_TABLES: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(256, T, 3) triangle table, (12, 3) lower-corner offsets, (12,) edge axes and (12,) lower
    corners of the edges on ``device``."""
    if device not in _TABLES:
        _TABLES[device] = (
            torch.as_tensor(triangle_table(), device=device),
            torch.as_tensor(CORNERS[EDGES[:, 0]], device=device),
            torch.as_tensor(EDGE_AXIS, device=device),
            torch.as_tensor(EDGES[:, 0], device=device),
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


def _triangles(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The triangles of the crossing cubes with table ``codes`` (M,): (F, 3) local edge ids of each
    triangle's corners and the (F,) index of its cube, in the order of the cubes and the table."""
    tris = _tables(codes.device)[0][codes]  # (M, T, 3)
    valid = tris[:, :, 0] >= 0
    cube_of_tri = torch.arange(len(codes), device=codes.device)[:, None].expand(-1, tris.shape[1])[valid]
    return tris[valid], cube_of_tri


def _active_edges(tsdf: torch.Tensor, iso: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Global ids of the crossing edges used by triangles, and (F, 3) faces indexing them."""
    K = tsdf.shape[0]
    _, lower, axes, _ = _tables(tsdf.device)
    cells, codes = _crossing_cubes(tsdf < iso)  # (M, 3), (M,)
    tri_edges, cube_of_tri = _triangles(codes)
    nodes = cells[cube_of_tri][:, None, :] + lower[tri_edges]  # (F, 3, 3) lower node of each edge
    linear = (nodes[..., 0] * K + nodes[..., 1]) * K + nodes[..., 2]
    edge_ids, faces = torch.unique((axes[tri_edges] * K**3 + linear).reshape(-1), return_inverse=True)
    return edge_ids, faces.reshape(-1, 3)


def _edge_vertices(
    nodes: tuple[torch.Tensor, torch.Tensor],
    K: int,
    ends: tuple[torch.Tensor, torch.Tensor],
    offsets: tuple[torch.Tensor, torch.Tensor] | None,
    iso: float,
) -> torch.Tensor:
    """(E, 3) vertices on the edges between the ``nodes`` (a, b), from the field values ``ends``
    (s_a, s_b) and the optional node offsets (off_a, off_b) there."""
    (a, b), (s_a, s_b) = nodes, ends
    t = ((iso - s_a) / (s_b - s_a)).clamp(0.0, 1.0)
    step = 2.0 / (K - 1)
    p_a = _node_positions(a, K, step, s_a.dtype)
    p_b = _node_positions(b, K, step, s_a.dtype)
    if offsets is not None:
        p_a, p_b = p_a + offsets[0], p_b + offsets[1]
    return p_a + t[:, None] * (p_b - p_a)


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
    a = edge_ids % K**3
    b = a + torch.tensor([K * K, K, 1], device=tsdf.device)[edge_ids // K**3]
    flat = tsdf.reshape(-1)
    off = None if offsets is None else offsets.reshape(-1, 3)
    vertices = _edge_vertices((a, b), K, (flat[a], flat[b]), None if off is None else (off[a], off[b]), iso)
    return vertices, faces


@dataclass(frozen=True)
class Band:
    """Some nodes of a K^3 grid (the band) and the cubes whose 8 corners are all band nodes.

    DMC on the band (:func:`band_marching_cubes`) visits only these cubes and needs values and
    offsets only at the band's nodes. It gives the dense DMC's mesh of any volume that agrees on
    the band and has no sign change in a cube with a corner outside it.

    Attributes:
        K: Nodes per axis.
        nodes: (N,) int64 linear indices ``(i K + j) K + k`` of the band's nodes, ascending.
        corners: (M, 8) int64 position in ``nodes`` of the corners of each of the band's cubes,
            in the case table's corner order (:data:`necgs.geometry.mc_tables.CORNERS`); the
            cubes in the dense DMC's (lexicographic) order.
        upper: (N, 3) int64 position in ``nodes`` of each node's neighbour one step up along
            x, y and z (-1 where that is not a band node).
    """

    K: int
    nodes: torch.Tensor
    corners: torch.Tensor
    upper: torch.Tensor

    @classmethod
    def of(cls, mask: torch.Tensor) -> Band:
        """The band of a (K, K, K) bool mask of nodes (on the mask's device).

        Raises:
            ConfigError: On a mask of the wrong shape or type.
        """
        if mask.dtype != torch.bool or mask.dim() != 3 or len(set(mask.shape)) != 1 or mask.shape[0] < 2:
            raise ConfigError(f"a band is a (K, K, K) bool mask with K >= 2, got {mask.dtype} {tuple(mask.shape)}")
        K = mask.shape[0]
        flat = mask.reshape(-1)
        nodes = torch.nonzero(flat).squeeze(1)
        rank = torch.cumsum(flat, 0) - 1  # position of each band node in ``nodes``
        whole = torch.ones((K - 1,) * 3, dtype=torch.bool, device=mask.device)
        for dx, dy, dz in CORNERS.tolist():
            whole &= mask[dx : dx + K - 1, dy : dy + K - 1, dz : dz + K - 1]
        cells = torch.nonzero(whole)  # (M, 3)
        corner = cells[:, None, :] + torch.as_tensor(CORNERS, device=mask.device)  # (M, 8, 3)
        corners = rank[(corner[..., 0] * K + corner[..., 1]) * K + corner[..., 2]]
        upper = torch.full((len(nodes), 3), -1, dtype=torch.int64, device=mask.device)
        ijk = torch.stack((nodes // (K * K), (nodes // K) % K, nodes % K), dim=1)
        for axis, stride in enumerate((K * K, K, 1)):
            up = nodes + stride
            there = (ijk[:, axis] < K - 1) & flat[up.clamp(max=K**3 - 1)]
            upper[there, axis] = rank[up[there]]
        return cls(K, nodes, corners, upper)


def band_marching_cubes(
    values: torch.Tensor, offsets: torch.Tensor | None, band: Band, iso: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`deformable_marching_cubes` on the cubes of a band, from values at its nodes only.

    The cubes with a sign change are taken in the dense DMC's order and their edges in the order
    of the dense DMC's edge ids (a band edge's key, axis * N + position of its lower node,
    sorts as its id does, because ``band.nodes`` ascend), so the mesh is the dense DMC's,
    vertex for vertex and face for face, of every volume that has ``values`` and ``offsets`` on
    the band and no sign change in a cube that is not the band's (``tests/unit/test_dmc.py``
    checks it on analytic shapes). The edges are deduplicated by marking their keys, without
    the sort of the dense DMC.

    Args:
        values: (N,) field values at ``band.nodes``, negative inside.
        offsets: (N, 3) displacements of those nodes in world units, or ``None``.
        band: The nodes and cubes.
        iso: The iso level.

    Returns:
        vertices (V, 3) in the dtype of ``values`` (differentiable w.r.t. ``values`` and
        ``offsets``) and faces (F, 3) int64, as :func:`deformable_marching_cubes`.

    Raises:
        ConfigError: On shapes that do not match the band.
    """
    N = band.nodes.numel()
    if tuple(values.shape) != (N,):
        raise ConfigError(f"band values must have shape {(N,)}, got {tuple(values.shape)}")
    if offsets is not None and tuple(offsets.shape) != (N, 3):
        raise ConfigError(f"band offsets must have shape {(N, 3)}, got {tuple(offsets.shape)}")
    device = values.device
    _, _, axes, first = _tables(device)
    inside = (values.detach() < iso)[band.corners].long()  # (M, 8)
    codes = (inside << torch.arange(8, device=device)).sum(1)
    crossing = torch.nonzero((codes != 0) & (codes != 255)).squeeze(1)
    tri_edges, cube_of_tri = _triangles(codes[crossing])
    slots = band.corners[crossing].reshape(-1)
    lower = slots[cube_of_tri[:, None] * 8 + first[tri_edges]]  # (F, 3) lower node of each edge
    keys = axes[tri_edges] * N + lower
    used = torch.zeros(3 * N, dtype=torch.bool, device=device)
    used[keys] = True
    faces = (torch.cumsum(used, 0) - 1)[keys]
    edge_keys = torch.nonzero(used).squeeze(1)
    if edge_keys.numel() == 0:
        return values.new_zeros((0, 3)), torch.zeros((0, 3), dtype=torch.int64, device=device)
    a = edge_keys % N
    b = band.upper[a, edge_keys // N]
    moved = None if offsets is None else (offsets[a], offsets[b])
    vertices = _edge_vertices((band.nodes[a], band.nodes[b]), band.K, (values[a], values[b]), moved, iso)
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
