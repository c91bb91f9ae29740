"""Mesh and Transform basics."""

import numpy as np
import pytest

from necgs.io.mesh import Mesh, Transform, fit_transform


def test_fit_transform_maps_bbox_into_unit_cube_and_back():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(100, 3)) * [3.0, 1.0, 0.5] + [10.0, -2.0, 5.0]
    t = fit_transform(v)
    n = t.apply(v)
    assert np.isclose(np.abs(n).max(), 1.0)
    assert np.allclose((n.max(0) + n.min(0)) / 2, 0.0, atol=1e-12)
    assert np.allclose(t.invert(n), v)


def test_transform_dict_round_trip_is_exact():
    t = Transform((0.1, 1 / 3, -2.5), 0.123456789)
    assert Transform.from_dict(t.to_dict()) == t
    with pytest.raises(ValueError):
        Transform.from_dict({"center": [0, 0, 0], "scale": -1})


def test_mesh_coerces_dtypes():
    m = Mesh(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]], np.int32), "t")
    assert m.vertices.dtype == np.float64 and m.faces.dtype == np.int64
    assert m.n_vertices == 3 and m.n_faces == 1
