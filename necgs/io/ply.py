"""The canonical binary PLY of a mesh: the reference size of every compression ratio.

float32 xyz vertices and int32 triangle indices, each face with a uint8 count, little
endian; its size follows from the vertex and face counts alone.
"""

from __future__ import annotations

import os

import numpy as np

from necgs.io.mesh import Mesh


def ply_header(n_vertices: int, n_faces: int) -> bytes:
    """The header of the canonical binary PLY of a mesh."""
    return (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {n_vertices}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {n_faces}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")


def ply_size(n_vertices: int, n_faces: int) -> int:
    """Exact size in bytes of the canonical binary PLY of a mesh with these counts."""
    return len(ply_header(n_vertices, n_faces)) + 12 * n_vertices + 13 * n_faces


def binary_ply_bytes(mesh: Mesh) -> int:
    """Exact size in bytes of the canonical binary PLY of ``mesh``."""
    return ply_size(mesh.n_vertices, mesh.n_faces)


def write_binary_ply(mesh: Mesh, path: str | os.PathLike) -> None:
    """Write ``mesh`` as the canonical binary PLY (the reference size of every ratio)."""
    face = np.zeros(mesh.n_faces, dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face["n"] = 3
    face["idx"] = mesh.faces
    with open(path, "wb") as fh:
        fh.write(ply_header(mesh.n_vertices, mesh.n_faces))
        fh.write(mesh.vertices.astype("<f4").tobytes())
        fh.write(face.tobytes())
