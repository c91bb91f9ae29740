"""Rate accounting."""

import numpy as np
import trimesh

from necgs.io.mesh import Mesh
from necgs.rate import binary_ply_bytes, rate_report, write_binary_ply


def test_binary_ply_size_is_exact_and_readable(tmp_path):
    box = trimesh.creation.box()
    mesh = Mesh(box.vertices, box.faces)
    path = tmp_path / "box.ply"
    write_binary_ply(mesh, path)
    assert path.stat().st_size == binary_ply_bytes(mesh)
    back = trimesh.load(path, process=False)
    assert np.allclose(back.vertices, box.vertices) and np.array_equal(back.faces, box.faces)


def test_rate_report_ratios():
    m = Mesh(np.zeros((10, 3)), np.zeros((5, 3), int))
    r = rate_report(100, 1000, [m, m])
    assert r.ply_bytes == 2 * binary_ply_bytes(m)
    assert r.ratio_files == 10.0 and r.n_vertices == 20
    assert np.isclose(r.bits_per_vertex, 40.0)
