"""Honest rate accounting: bytes, compression ratios and bits per vertex.

The ratio is always original bytes / compressed bytes with the compressed size being
the whole output (archive header included). The original is reported two ways: the
files as given, and a canonical binary PLY (float32 xyz vertices, int32 triangle
indices with a uint8 count) of the same meshes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from necgs.io.mesh import Mesh


def ply_header(n_vertices: int, n_faces: int) -> bytes:
    """The header of the canonical binary PLY of a mesh."""
    return (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {n_vertices}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {n_faces}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")


def write_binary_ply(mesh: Mesh, path) -> None:
    """Write ``mesh`` as the canonical binary PLY (the reference size of every ratio)."""
    import numpy as np

    face = np.zeros(mesh.n_faces, dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face["n"] = 3
    face["idx"] = mesh.faces
    with open(path, "wb") as fh:
        fh.write(ply_header(mesh.n_vertices, mesh.n_faces))
        fh.write(mesh.vertices.astype("<f4").tobytes())
        fh.write(face.tobytes())


def binary_ply_bytes(mesh: Mesh) -> int:
    """Exact size in bytes of the canonical binary PLY of ``mesh``."""
    return len(ply_header(mesh.n_vertices, mesh.n_faces)) + 12 * mesh.n_vertices + 13 * mesh.n_faces


@dataclass(frozen=True)
class RateReport:
    """Rate of a compressed set.

    Attributes:
        compressed_bytes: Size of everything the decoder needs.
        source_bytes: Size of the input files as given.
        ply_bytes: Size of the same meshes as canonical binary PLY.
        n_vertices: Total number of original vertices.
        ratio_files: source_bytes / compressed_bytes.
        ratio_ply: ply_bytes / compressed_bytes.
        bits_per_vertex: 8 * compressed_bytes / n_vertices.
    """

    compressed_bytes: int
    source_bytes: int
    ply_bytes: int
    n_vertices: int
    ratio_files: float
    ratio_ply: float
    bits_per_vertex: float

    def to_dict(self) -> dict:
        """Plain ``dict`` of the fields."""
        return asdict(self)


def rate_report(compressed_bytes: int, source_bytes: int, meshes: Sequence[Mesh]) -> RateReport:
    """Build a :class:`RateReport` for ``meshes`` compressed into ``compressed_bytes``."""
    if compressed_bytes <= 0:
        raise ValueError("compressed size must be positive")
    ply = sum(binary_ply_bytes(m) for m in meshes)
    n_vertices = sum(m.n_vertices for m in meshes)
    return RateReport(
        compressed_bytes=int(compressed_bytes),
        source_bytes=int(source_bytes),
        ply_bytes=int(ply),
        n_vertices=int(n_vertices),
        ratio_files=source_bytes / compressed_bytes,
        ratio_ply=ply / compressed_bytes,
        bits_per_vertex=8.0 * compressed_bytes / max(n_vertices, 1),
    )
