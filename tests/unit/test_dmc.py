"""Deformable Marching Cubes against analytic shapes and scikit-image."""

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from necgs.errors import ConfigError
from necgs.geometry.dmc import deformable_marching_cubes, grid_coordinates, mesh_from_volume, volume_to_mesh
from necgs.geometry.mc_tables import triangle_table

K = 40


def sphere(g):
    return g.norm(dim=-1) - 0.6


def torus(g):
    q = torch.stack((torch.sqrt(g[..., 0] ** 2 + g[..., 1] ** 2) - 0.55, g[..., 2]), -1)
    return q.norm(dim=-1) - 0.22


def box(g):
    q = g.abs() - torch.tensor([0.5, 0.35, 0.6], dtype=g.dtype)
    return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)


@pytest.mark.parametrize("field", [sphere, torus, box])
def test_matches_scikit_image_without_deformation(field):
    g = grid_coordinates(K, dtype=torch.float64)
    s = field(g)
    v, f = deformable_marching_cubes(s)
    ours = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    sv, sf, _, _ = marching_cubes(s.numpy(), 0.0, spacing=(2 / (K - 1),) * 3)
    ref = trimesh.Trimesh(sv - 1.0, sf, process=False)
    assert abs(ours.area / ref.area - 1) < 5e-3
    assert abs(ours.volume / abs(ref.volume) - 1) < 5e-3
    d_ours, _ = cKDTree(ref.vertices).query(ours.vertices)
    d_ref, _ = cKDTree(ours.vertices).query(ref.vertices)
    assert max(d_ours.max(), d_ref.max()) < 1e-6  # same edge vertices, float precision


@pytest.mark.parametrize("field", [sphere, torus])
def test_closed_field_gives_closed_outward_mesh(field):
    v, f = deformable_marching_cubes(field(grid_coordinates(24, dtype=torch.float64)))
    m = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    assert m.is_watertight and m.volume > 0


def test_random_fields_stay_closed():
    gen = torch.Generator().manual_seed(0)
    s = torch.rand((12, 12, 12), generator=gen, dtype=torch.float64) - 0.5
    s[0], s[-1], s[:, 0], s[:, -1], s[:, :, 0], s[:, :, -1] = 1, 1, 1, 1, 1, 1  # closed at the border
    v, f = deformable_marching_cubes(s)
    edges = np.sort(f.numpy()[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts == 2)


def test_uniform_offset_translates_surface():
    g = grid_coordinates(20, dtype=torch.float64)
    s = sphere(g)
    shift = torch.tensor([0.01, -0.02, 0.005], dtype=torch.float64)
    v0, f0 = deformable_marching_cubes(s)
    v1, f1 = deformable_marching_cubes(s, shift.expand(20, 20, 20, 3))
    assert torch.equal(f0, f1) and torch.allclose(v1 - v0, shift.expand_as(v0))


def test_gradcheck_tsdf_and_offsets():
    g = grid_coordinates(6, dtype=torch.float64)
    s = (g.norm(dim=-1) - 0.55).requires_grad_()
    off = 0.05 * torch.randn((6, 6, 6, 3), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    off.requires_grad_()
    w = torch.randn((200, 3), dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def f(s_, o_):
        v, _ = deformable_marching_cubes(s_, o_)
        return (v * w[: v.shape[0]]).sum()

    assert torch.autograd.gradcheck(f, (s, off), eps=1e-6, atol=1e-5)


def test_volume_convention_and_empty_and_errors():
    K2 = 16
    vol = torch.zeros((4, K2, K2, K2))
    vol[0] = 1.0
    v, f = volume_to_mesh(vol)
    assert v.shape == (0, 3) and f.shape == (0, 3)
    vol[0] = sphere(grid_coordinates(K2)).clamp(-1, 1)
    vol[1] = 5.0  # clamped to one half voxel
    m = mesh_from_volume(vol)
    m0 = mesh_from_volume(vol, deform=False)
    assert np.allclose(m.vertices[:, 0] - m0.vertices[:, 0], 0.5 * 2 / (K2 - 1), atol=1e-6)
    with pytest.raises(ConfigError):
        deformable_marching_cubes(torch.zeros((4, 5, 6)))
    with pytest.raises(ConfigError):
        volume_to_mesh(torch.zeros((3, 8, 8, 8)))


def test_table_has_every_case():
    t = triangle_table()
    counts = (t[:, :, 0] >= 0).sum(1)
    assert counts[0] == 0 and counts[255] == 0 and np.all(counts[1:255] >= 1)


def test_crossing_cubes_match_a_corner_by_corner_case_index():
    from necgs.geometry.dmc import _crossing_cubes
    from necgs.geometry.mc_tables import CORNERS

    torch.manual_seed(0)
    inside = torch.rand(9, 9, 9) < 0.3
    n = 8
    code = torch.zeros((n, n, n), dtype=torch.int64)
    for c, (dx, dy, dz) in enumerate(CORNERS.tolist()):
        code |= inside[dx : dx + n, dy : dy + n, dz : dz + n].long() << c
    cells, codes = _crossing_cubes(inside)
    expected = torch.nonzero((code > 0) & (code < 255))
    assert torch.equal(cells, expected)
    assert torch.equal(codes, code[expected[:, 0], expected[:, 1], expected[:, 2]])
    assert 0 < len(cells) < n**3


@pytest.mark.parametrize("K", [32, 64])
@pytest.mark.parametrize("field", [sphere, torus])
def test_band_dmc_gives_the_dense_mesh(field, K):
    from necgs.geometry.dmc import Band, band_marching_cubes
    from necgs.geometry.tsdf import band_nodes

    h = 2 / (K - 1)
    tsdf = (field(grid_coordinates(K)) / (2 * h)).clamp(-1, 1)
    mask = band_nodes(tsdf, 1)
    band = Band.of(mask)
    gen = torch.Generator().manual_seed(K)
    offsets = 0.5 * h * torch.tanh(torch.randn((K, K, K, 3), generator=gen)) * mask[..., None]
    values = tsdf.reshape(-1)[band.nodes].requires_grad_()
    v, f = deformable_marching_cubes(tsdf, offsets)
    vb, fb = band_marching_cubes(values, offsets.reshape(-1, 3)[band.nodes], band)
    assert torch.equal(f, fb) and torch.equal(v, vb.detach())
    assert band.nodes.numel() < 0.3 * K**3 and len(band.corners) < 0.3 * (K - 1) ** 3
    vb.sum().backward()
    assert values.grad.abs().sum() > 0  # gradients reach the band's values


def test_band_keeps_a_far_field_sign_change_and_gives_the_dense_mesh():
    from necgs.geometry.dmc import Band, band_marching_cubes
    from necgs.geometry.tsdf import band_nodes

    K = 24
    tsdf = (sphere(grid_coordinates(K)) / 0.1).clamp(-1, 1)
    tsdf[2, 3, 20] = -1.0  # a lone far node voted inside (a messy mesh's sign)
    tsdf[20, 20, 2:5] = -1.0
    for margin in (0, 1, 2):
        mask = band_nodes(tsdf, margin)
        assert mask[2, 3, 20] and mask[20, 20, 3] and mask[3, 4, 21]
        band = Band.of(mask)
        assert (tsdf[~mask].abs() == 1).all()
        v, f = deformable_marching_cubes(tsdf)
        vb, fb = band_marching_cubes(tsdf.reshape(-1)[band.nodes], None, band)
        assert torch.equal(f, fb) and torch.equal(v, vb) and len(f) > 0


def test_band_errors_name_the_problem():
    from necgs.geometry.dmc import Band, band_marching_cubes
    from necgs.geometry.tsdf import band_nodes

    with pytest.raises(ConfigError, match="bool mask"):
        Band.of(torch.ones((4, 4, 5), dtype=torch.bool))
    band = Band.of(torch.ones((4, 4, 4), dtype=torch.bool))
    with pytest.raises(ConfigError, match="band values"):
        band_marching_cubes(torch.zeros(10), None, band)
    with pytest.raises(ConfigError, match="band offsets"):
        band_marching_cubes(torch.zeros(64), torch.zeros(64, 2), band)
    with pytest.raises(ConfigError, match="margin"):
        band_nodes(torch.zeros((4, 4, 4)), -1)
    empty = Band.of(torch.zeros((4, 4, 4), dtype=torch.bool))
    v, f = band_marching_cubes(torch.zeros(0), None, empty)
    assert v.shape == (0, 3) and f.shape == (0, 3)
