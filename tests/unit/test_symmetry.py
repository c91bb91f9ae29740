"""Mirror images and quarter turns of TSDF-Def volumes decode to the mirrored and turned surfaces."""

import pytest
import torch
from scipy.spatial import cKDTree

from necgs.errors import ConfigError
from necgs.geometry.dmc import grid_coordinates, volume_to_mesh
from necgs.geometry.symmetry import augment_volumes, mirror_x, quarter_turn_y

K = 24


def lopsided_volume() -> torch.Tensor:
    """(1, 4, K, K, K): an off-centre box with a deformation field that varies along every axis."""
    g = grid_coordinates(K, dtype=torch.float64)
    q = (g - torch.tensor([0.2, -0.1, 0.3], dtype=g.dtype)).abs() - torch.tensor([0.4, 0.25, 0.15], dtype=g.dtype)
    sdf = q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)
    tsdf = (sdf / 0.2).clamp(-1, 1)
    deform = torch.stack((torch.sin(3 * g[..., 1]), 0.5 * g[..., 2], torch.cos(2 * g[..., 0]) - 0.5), dim=0)
    return torch.cat((tsdf[None], 0.8 * deform)).float()[None]


def max_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest distance from a vertex of either set to the nearest vertex of the other."""
    a, b = a.double().numpy(), b.double().numpy()
    return max(cKDTree(b).query(a)[0].max(), cKDTree(a).query(b)[0].max())


@pytest.mark.parametrize(
    "transform, points",
    [
        (mirror_x, lambda v: v * torch.tensor([-1.0, 1.0, 1.0])),
        (quarter_turn_y, lambda v: torch.stack((v[:, 2], v[:, 1], -v[:, 0]), dim=1)),
    ],
)
def test_a_transformed_volume_decodes_to_the_transformed_surface(transform, points):
    vol = lopsided_volume()
    v, f = volume_to_mesh(vol[0])
    tv, tf = volume_to_mesh(transform(vol)[0])
    assert len(tv) == len(v) and len(tf) == len(f) and len(v) > 100
    assert max_gap(tv, points(v)) < 1e-5
    assert max_gap(tv, v) > 0.1  # the shape is lopsided: the transform moved it


def test_four_quarter_turns_and_two_mirrors_are_the_identity():
    vol = lopsided_volume()
    turned = vol
    for _ in range(4):
        turned = quarter_turn_y(turned)
    assert torch.equal(turned, vol) and torch.equal(mirror_x(mirror_x(vol)), vol)


def test_augmentation_copies_every_shape_and_names_the_copies():
    vols = torch.cat([lopsided_volume(), mirror_x(lopsided_volume())])
    for mode, copies in (("none", 1), ("mirror", 2), ("turns", 8)):
        out, suffixes = augment_volumes(vols, mode)
        assert out.shape == (2 * copies, 4, K, K, K) and len(suffixes) == copies == len(set(suffixes))
        assert torch.equal(out[:2], vols) and suffixes[0] == ""
    out, suffixes = augment_volumes(vols, "turns")
    assert torch.equal(out[2 * suffixes.index("/mirror/turn1")], quarter_turn_y(mirror_x(vols))[0])
    with pytest.raises(ConfigError, match="augmentation must be one of"):
        augment_volumes(vols, "spin")


@pytest.mark.parametrize("mode", ["none", "mirror", "turns"])
def test_a_set_held_as_blocks_gets_the_same_copies_in_the_same_order(mode):
    from necgs.geometry.block_volume import VolumeSet
    from necgs.geometry.symmetry import augment_volume_set

    vols = torch.cat([lopsided_volume(), quarter_turn_y(lopsided_volume()) * 0.5])
    vols[:, 1:, :8] = 0.0  # a slab of far blocks with no deformation: a mirror image's are -0.0
    vols[:, 0, :8] = 1.0
    dense, names = augment_volumes(vols, mode)
    blocks, block_names = augment_volume_set(VolumeSet.from_dense(vols), mode)
    assert block_names == names and torch.equal(blocks.dense(), dense)
    assert blocks.blocks == len(blocks) * 18  # the slab's 9 of 27 blocks stay one value in every copy


def orientation(mesh) -> float:
    """Share of faces whose normal points away from the centroid, minus one half: the winding's sign."""
    import numpy as np

    tri = mesh.vertices[mesh.faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return float(((normal * (tri.mean(1) - mesh.vertices.mean(0))).sum(1) > 0).mean() - 0.5)


def test_a_copys_mesh_is_the_decoded_copy_in_the_originals_frame():
    import numpy as np

    from necgs.geometry.symmetry import copy_mesh
    from necgs.io.mesh import Mesh, Transform

    vol = lopsided_volume()
    v, f = volume_to_mesh(vol[0])
    transform = Transform((1.0, -2.0, 0.5), 0.25)  # original -> grid frame
    original = Mesh(transform.invert(v.double().numpy()), f.numpy(), "shape")
    copies, suffixes = augment_volumes(vol, "turns")
    for copy, suffix in zip(copies, suffixes):
        cv, cf = volume_to_mesh(copy)
        moved = copy_mesh(original, transform, suffix)
        assert moved.name == "shape" + suffix and len(moved.faces) == len(cf)
        assert max_gap(torch.from_numpy(transform.apply(moved.vertices)), cv) < 1e-5
        if suffix:
            assert max_gap(torch.from_numpy(moved.vertices), torch.from_numpy(original.vertices)) > 0.4
        assert np.sign(orientation(moved)) == np.sign(orientation(original))  # a mirror image's faces reversed
    with pytest.raises(ConfigError, match="copy suffix"):
        copy_mesh(original, transform, "/spin")
