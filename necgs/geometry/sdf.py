"""Signed distance to a triangle mesh that stays sensible for open and messy meshes.

Magnitude: exact unsigned distance to the triangles (open3d's C++ ``RaycastingScene``).
Sign: inside/outside by multi-ray voting (``compute_occupancy`` with ``RAY_VOTES`` random
rays per point, odd so there is a majority). Parity along one ray flips on every hole or
doubled sheet; a majority of several random rays survives small holes (the Sumner horses),
non-manifold edges and overlapping components (Thingi10K), at a fraction of the cost of the
distance query (measurements: docs/ARCHITECTURE.md, 'Decisions and why', "Inside/outside for
open meshes").

A mesh with no inside at all (a lone sheet) would vanish from a TSDF; such a mesh gets a
thin closed shell instead: ``distance - shell``, so its surface survives as a thin slab.

Parts of a solid thinner than a grid step (an elephant's ears, thin fins and plates) vanish the
same way: no grid node falls inside them. With ``thin`` > 0 an outside point within ``thin`` of
the surface whose closest surface point has outside behind it (one ``probe`` step against the
surface normal) is given ``distance - thin`` as well, so such a part survives as a slab about
``2 thin`` thick; points beside thick parts, and in narrow gaps between them, keep their sign.

A truncated distance needs the magnitude only near the surface, and the distance query is the
costly part (far from the surface most of all): ``near`` names the points whose distance is
wanted, the others get only their sign (+-inf). Both queries give each point the same answer
whatever else is queried with it, so the near points' values are those of the full query, and
the queries run in chunks of ``CHUNK`` points: the vote's rays of all K^3 nodes at once would
take hundreds of MB at K = 128 (measurements: benchmarks/README.md, "Fitting only near the surface").
"""

from __future__ import annotations

import numpy as np

from necgs.errors import DependencyError

#: Rays per point in the inside/outside vote.
RAY_VOTES = 5
#: Points per distance or occupancy query.
CHUNK = 1 << 16


def _scene(vertices: np.ndarray, faces: np.ndarray):
    try:  # imported when used: open3d is heavy and needs system libraries some machines lack
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


def _query(method, o3d, points: np.ndarray, **kwargs) -> np.ndarray:
    """``method`` (a RaycastingScene query) of (N, 3) float32 points, ``CHUNK`` points at a time."""
    parts = [
        method(o3d.core.Tensor(np.ascontiguousarray(points[i : i + CHUNK])), **kwargs).numpy()
        for i in range(0, len(points), CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def unsigned_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N,) float32 distance of (N, 3) points to the triangles of a (V, 3) / (F, 3) mesh."""
    scene, o3d = _scene(vertices, faces)
    return _query(scene.compute_distance, o3d, np.asarray(points, dtype=np.float32))


def signed_distance(
    vertices: np.ndarray,
    faces: np.ndarray,
    points: np.ndarray,
    shell: float = 0.0,
    thin: float = 0.0,
    probe: float = 0.0,
    near: np.ndarray | None = None,
) -> np.ndarray:
    """Signed distance of points to a mesh, negative inside.

    Args:
        vertices: (V, 3) mesh vertices.
        faces: (F, 3) triangle indices.
        points: (N, 3) query points.
        shell: Half-thickness given to a mesh with no inside (a lone sheet); 0 keeps it unsigned.
        thin: Half-thickness given to parts thinner than ``probe`` (0: none; see the module).
        probe: Depth behind the surface at which a part counts as thin when it is outside there.
        near: (N,) bool, the points whose distance is wanted (all when ``None``); every other
            point gets +-inf with its sign. It must hold every point within ``thin`` of the
            surface, so that the thin-part test sees them.

    Returns:
        (N,) float32 signed distances.
    """
    scene, o3d = _scene(vertices, faces)
    query = np.asarray(points, dtype=np.float32)
    if near is None:
        distance = _query(scene.compute_distance, o3d, query)
    else:
        distance = np.full(len(query), np.inf, dtype=np.float32)
        distance[near] = _query(scene.compute_distance, o3d, query[near])
    inside = _query(scene.compute_occupancy, o3d, query, nsamples=RAY_VOTES) > 0.5
    if not inside.any():
        return (distance - shell).astype(np.float32)
    sdf = np.where(inside, -distance, distance).astype(np.float32)
    if thin > 0:
        close = np.flatnonzero(~inside & (distance < thin))
        thin_at = close[_thin_behind(scene, o3d, points[close], probe)]
        sdf[thin_at] = distance[thin_at] - thin
    return sdf


def _thin_behind(scene, o3d, points: np.ndarray, probe: float) -> np.ndarray:
    """(N,) bool: for outside points, whether their closest surface point has outside ``probe`` behind it.

    Behind is along the line from the point through its closest surface point (at a box's edge
    or corner that line enters the solid where a face normal would graze it); for a point on
    the surface itself, against the face normal.
    """
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    closest = scene.compute_closest_points(o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32)))
    surface = closest["points"].numpy()
    normal = closest["primitive_normals"].numpy()
    inward = surface - points
    length = np.linalg.norm(inward, axis=1, keepdims=True)
    facing = np.where(np.sum(inward * normal, axis=1, keepdims=True) > 0, 1.0, -1.0)  # normal away from the point
    direction = np.where(length > 1e-6 * probe, inward / np.maximum(length, 1e-30), facing * normal)
    behind = surface + direction * probe
    query = o3d.core.Tensor(np.ascontiguousarray(behind, dtype=np.float32))
    return scene.compute_occupancy(query, nsamples=RAY_VOTES).numpy() <= 0.5
