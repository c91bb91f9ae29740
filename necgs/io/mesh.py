"""The in-memory mesh type and the normalization transform.

A :class:`Mesh` is a plain triangle mesh held as NumPy arrays; it is the type
every stage of necgs passes around (loaders, codecs, metrics, the app).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh.

    Attributes:
        vertices: (V, 3) float64 vertex positions.
        faces: (F, 3) int64 vertex indices of each triangle.
        name: A short identifier, unique within a set (e.g. ``"crane/mesh_0000"``).
    """

    vertices: np.ndarray
    faces: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64).reshape(-1, 3)

    @classmethod
    def empty(cls, name: str = "") -> Mesh:
        """A mesh with no vertex and no face (a decode that gave no surface)."""
        return cls(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), name)

    @property
    def n_vertices(self) -> int:
        """Number of vertices."""
        return int(self.vertices.shape[0])

    @property
    def n_faces(self) -> int:
        """Number of triangles."""
        return int(self.faces.shape[0])

    def to_trimesh(self):  # -> trimesh.Trimesh
        """Return a ``trimesh.Trimesh`` view of this mesh (no processing)."""
        import trimesh  # imported when used: trimesh is slow to import and most commands never need it

        return trimesh.Trimesh(self.vertices, self.faces, process=False)

    def transformed(self, transform: Transform, inverse: bool = False) -> Mesh:
        """Return a copy with ``transform`` (or its inverse) applied to the vertices."""
        v = transform.invert(self.vertices) if inverse else transform.apply(self.vertices)
        return Mesh(v, self.faces.copy(), self.name)


@dataclass(frozen=True)
class Transform:
    """A uniform scale about a centre: ``normalized = (x - center) * scale``.

    Attributes:
        center: (3,) centre subtracted before scaling.
        scale: Positive uniform scale factor.
    """

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 3) points from original to normalized coordinates."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.center)) * self.scale

    def invert(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 3) points from normalized back to original coordinates."""
        return np.asarray(points, dtype=np.float64) / self.scale + np.asarray(self.center)

    def to_dict(self) -> dict:
        """JSON-ready form (exact float round trip through ``repr``)."""
        return {"center": [float(c) for c in self.center], "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, data: dict) -> Transform:
        """Inverse of :meth:`to_dict`."""
        center = tuple(float(c) for c in data["center"])
        if len(center) != 3:
            raise ValueError("transform center must have 3 coordinates")
        scale = float(data["scale"])
        if not np.isfinite(scale) or scale <= 0 or not np.all(np.isfinite(center)):
            raise ValueError("transform scale must be a positive finite number")
        return cls(center, scale)  # type: ignore[arg-type]


def fit_transform(vertices: np.ndarray, half_extent: float = 1.0) -> Transform:
    """Transform that centres the bounding box and scales its longest side to ``2 * half_extent``.

    Args:
        vertices: (V, 3) points of the shape.
        half_extent: Half the side of the target cube; ``1.0`` maps into [-1, 1]^3.

    Returns:
        The :class:`Transform` into the cube ``[-half_extent, half_extent]^3``.
    """
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    center = (lo + hi) / 2.0
    extent = float((hi - lo).max()) / 2.0
    scale = half_extent / extent if extent > 0 else 1.0
    return Transform(tuple(float(c) for c in center), scale)  # type: ignore[arg-type]
