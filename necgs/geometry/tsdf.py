"""Truncated signed distance volumes on the K^3 grid nodes over [-1, 1]^3.

Only the nodes near the surface need a distance: every other node is truncated to +-1 and needs
just its sign. The distance query costs most far from the surface, so :func:`tsdf_volume` first
asks it at the centres of cells of ``COARSE``^3 nodes and queries the nodes of the cells that may
reach the surface (the distance is 1-Lipschitz, so a cell whose centre is further than the
truncation plus the cell's half-diagonal holds no node below it). The result is the same array as
querying every node; the inside/outside vote still runs at every node (it is several times
cheaper than the distance; measurements: benchmarks/README.md, "Fitting only near the surface").
"""

from __future__ import annotations

import math

import numpy as np
import torch

from necgs.config import validate_resolution
from necgs.errors import ConfigError, MeshError
from necgs.geometry.mc_tables import CORNERS
from necgs.geometry.sdf import signed_distance, unsigned_distance

#: Side, in nodes, of the coarse cells that pick the nodes near the surface.
COARSE = 4


def voxel_size(K: int) -> float:
    """Spacing h = 2 / (K - 1) of the grid nodes."""
    return 2.0 / (K - 1)


def grid_points(K: int) -> np.ndarray:
    """(K^3, 3) float32 node coordinates, 'ij' order (x slowest)."""
    axis = np.linspace(-1.0, 1.0, K, dtype=np.float32)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def tsdf_volume(
    vertices: np.ndarray, faces: np.ndarray, K: int, truncation_voxels: float = 2.0, thin_voxels: float = 0.0
) -> np.ndarray:
    """TSDF of a mesh (already in the grid frame) on the K^3 grid nodes.

    Args:
        vertices: (V, 3) vertices inside [-1, 1]^3.
        faces: (F, 3) triangle indices.
        K: Nodes per axis (power of two, 8..256).
        truncation_voxels: Truncation distance in voxels.
        thin_voxels: Parts thinner than a grid step become slabs of this half-thickness (in
            voxels) instead of vanishing (:func:`necgs.geometry.sdf.signed_distance`); 0: off.

    Returns:
        (K, K, K) float32 clip(sdf / (truncation_voxels * h), -1, 1), negative inside.

    Raises:
        ConfigError: Bad K or truncation.
        MeshError: Empty or non-finite mesh.
    """
    validate_resolution(K)
    if not truncation_voxels > 0:
        raise ConfigError(f"truncation must be a positive number of voxels, got {truncation_voxels!r}")
    vertices = np.asarray(vertices, dtype=np.float64)
    if len(faces) == 0 or len(vertices) == 0:
        raise MeshError("tsdf", "mesh is empty")
    if not np.all(np.isfinite(vertices)):
        raise MeshError("tsdf", "mesh has non-finite coordinates")
    h = voxel_size(K)
    shell, thin = 0.5 * h, thin_voxels * h
    # below this distance a node's value is not the truncated +-1 (a lone sheet's shell, a thin part's slab)
    reach = truncation_voxels * h + max(shell, thin)
    near = near_nodes(vertices, faces, K, reach).reshape(-1)
    sdf = signed_distance(vertices, faces, grid_points(K), shell=shell, thin=thin, probe=h, near=near)
    return np.clip(sdf / (truncation_voxels * h), -1.0, 1.0).reshape(K, K, K).astype(np.float32)


def near_nodes(vertices: np.ndarray, faces: np.ndarray, K: int, reach: float) -> np.ndarray:
    """The grid nodes that may lie within ``reach`` of the mesh (a superset; grid frame).

    Args:
        vertices: (V, 3) vertices inside [-1, 1]^3.
        faces: (F, 3) triangle indices.
        K: Nodes per axis (a multiple of :data:`COARSE`).
        reach: Distance in grid units.

    Returns:
        (K, K, K) bool: the nodes of every cell of ``COARSE``^3 nodes whose centre is within
        ``reach`` plus the cell's half-diagonal (plus a hundredth of a voxel against rounding).
    """
    h, n = voxel_size(K), K // COARSE
    axis = -1.0 + (COARSE * np.arange(n) + 0.5 * (COARSE - 1)) * h
    centres = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    half_diagonal = 0.5 * math.sqrt(3.0) * (COARSE - 1) * h
    close = unsigned_distance(vertices, faces, centres) <= reach + half_diagonal + 0.01 * h
    cells = close.reshape(n, n, n)
    return cells.repeat(COARSE, 0).repeat(COARSE, 1).repeat(COARSE, 2)


def band_nodes(tsdf: torch.Tensor, margin: int) -> torch.Tensor:
    """The band of a TSDF: the nodes near the surface, where its values may change.

    The seeds are the nodes that are not truncated (|tsdf| < 1) and the corners of every cube
    with a sign change (a far-field sign that flips from node to node, which the inside/outside
    vote can give on a messy mesh); the band is every node within ``margin`` nodes of a seed
    along each axis (a (2 margin + 1)^3 cube around it).

    A cube with a corner outside the band has no surface: its corners are no seeds (each is
    within one node of that corner, which is more than ``margin`` from every seed, or is a
    corner of a cube with a sign change, which would make it a seed), so they are all +1 or all
    -1. DMC on the band's cubes (:class:`necgs.geometry.dmc.Band`) thus gives the dense mesh.

    Args:
        tsdf: (K, K, K) TSDF in [-1, 1], negative inside.
        margin: Nodes added around the seeds (>= 0).

    Returns:
        (K, K, K) bool on the TSDF's device.

    Raises:
        ConfigError: On a negative margin.
    """
    if margin < 0:
        raise ConfigError(f"band margin must be >= 0 nodes, got {margin}")
    K = tsdf.shape[0]
    inside = tsdf < 0
    cube = (slice(0, K - 1), slice(1, K))
    some = torch.zeros((K - 1,) * 3, dtype=torch.bool, device=tsdf.device)
    every = torch.ones_like(some)
    for corner in CORNERS.tolist():
        at = inside[cube[corner[0]], cube[corner[1]], cube[corner[2]]]
        some |= at
        every &= at
    mixed = some & ~every
    seeds = tsdf.abs() < 1
    for corner in CORNERS.tolist():
        seeds[cube[corner[0]], cube[corner[1]], cube[corner[2]]] |= mixed
    if margin == 0:
        return seeds
    grown = seeds[None, None].float()
    for kernel in ((2 * margin + 1, 1, 1), (1, 2 * margin + 1, 1), (1, 1, 2 * margin + 1)):
        padding = tuple(k // 2 for k in kernel)
        grown = torch.nn.functional.max_pool3d(grown, kernel, stride=1, padding=padding)
    return grown[0, 0] > 0
