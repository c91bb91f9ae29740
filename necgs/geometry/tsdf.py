"""Truncated signed distance volumes on the K^3 grid nodes over [-1, 1]^3."""

from __future__ import annotations

import numpy as np

from necgs.config import validate_resolution
from necgs.errors import ConfigError, MeshError
from necgs.geometry.sdf import signed_distance


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
    sdf = signed_distance(vertices, faces, grid_points(K), shell=0.5 * h, thin=thin_voxels * h, probe=h)
    return np.clip(sdf / (truncation_voxels * h), -1.0, 1.0).reshape(K, K, K).astype(np.float32)
