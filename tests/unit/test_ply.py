"""The canonical binary PLY: its size follows from the counts, and other readers read it."""

import numpy as np
import trimesh

from necgs.io.mesh import Mesh
from necgs.io.ply import binary_ply_bytes, ply_header, ply_size, write_binary_ply


def test_binary_ply_size_is_exact_and_readable(tmp_path):
    box = trimesh.creation.box()
    mesh = Mesh(box.vertices, box.faces)
    path = tmp_path / "box.ply"
    write_binary_ply(mesh, path)
    assert path.stat().st_size == binary_ply_bytes(mesh)
    back = trimesh.load(path, process=False)
    assert np.allclose(back.vertices, box.vertices) and np.array_equal(back.faces, box.faces)


def test_ply_size_counts_header_vertices_and_faces():
    assert ply_size(10, 5) == len(ply_header(10, 5)) + 10 * 12 + 5 * 13
    assert ply_size(100, 5) - ply_size(10, 5) == 90 * 12 + 1  # and the header by one digit
