"""The regression loss (Eq. 3), its 3D SSIM, and the near-surface SSIM cube."""

import pytest
import torch

from necgs.training.losses import LossWeights, random_cube, ssim3d, surface_loss, volume_loss


def sphere_volume(K: int = 32, r: float = 0.5, shift: float = 0.0) -> torch.Tensor:
    g = torch.linspace(-1, 1, K)
    x, y, z = torch.meshgrid(g - shift, g, g, indexing="ij")
    tsdf = ((torch.sqrt(x**2 + y**2 + z**2) - r) / (4 / (K - 1))).clamp(-1, 1)
    return torch.cat([tsdf[None], torch.zeros(3, K, K, K)])[None]


def test_ssim_is_one_on_identical_volumes_and_falls_with_noise():
    v = (sphere_volume() + 1) / 2
    assert abs(float(ssim3d(v, v)) - 1) < 1e-5
    noisy = (v + 0.1 * torch.randn_like(v, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert float(ssim3d(noisy, v)) < 0.9


def test_loss_is_zero_on_the_target_and_grows_with_error():
    t = sphere_volume()
    w = LossWeights()
    assert float(volume_loss(t, t, w)) < 1e-5
    assert (
        float(volume_loss(sphere_volume(shift=0.1), t, w)) > float(volume_loss(sphere_volume(shift=0.02), t, w)) > 0.01
    )


def test_ssim_cube_lies_on_the_surface_and_is_reproducible():
    t = sphere_volume(K=32)
    for seed in range(20):
        _, cube = random_cube(t, t, 0.5, torch.Generator().manual_seed(seed))
        assert cube.shape[-3:] == (16, 16, 16)
        assert bool((cube[:, 0].abs() < 1).any()), "the cube must hold near-surface nodes"
    w = LossWeights(ssim_crop=0.5)
    p = sphere_volume(shift=0.05)
    a = volume_loss(p, t, w, torch.Generator().manual_seed(3))
    b = volume_loss(p, t, w, torch.Generator().manual_seed(3))
    assert float(a) == float(b)
    whole, same = random_cube(p, t, 1.0, None)
    assert whole is p and same is t


def test_deform_weight_scales_only_the_deformation_channels():
    t = sphere_volume()
    wrong_deform = t.clone()
    wrong_deform[:, 1:] = 0.3
    wrong_tsdf = sphere_volume(shift=0.05)
    for ssim in (True, False):
        paper, tsdf_only = LossWeights(use_ssim=ssim), LossWeights(use_ssim=ssim, deform_weight=0.0)
        assert float(volume_loss(wrong_deform, t, tsdf_only)) < 1e-5 < float(volume_loss(wrong_deform, t, paper))
        half = float(volume_loss(wrong_deform, t, LossWeights(use_ssim=ssim, deform_weight=0.5)))
        assert abs(half - 0.5 * float(volume_loss(wrong_deform, t, paper))) < 1e-5
        assert abs(float(volume_loss(wrong_tsdf, t, tsdf_only)) - float(volume_loss(wrong_tsdf, t, paper))) < 1e-5


def _ball_blocks(radius: float) -> torch.Tensor:
    """Three 8^3 TSDF blocks of a ball of ``radius`` (grid frame [-1, 1])."""
    return sphere_volume(8, radius).repeat(3, 1, 1, 1, 1)


def test_surface_loss_measures_how_far_the_surfaces_lie_in_voxels_and_pulls_them_together():
    target = _ball_blocks(0.5)
    assert surface_loss(target, target).item() == pytest.approx(0.0, abs=1e-3)
    near, far = surface_loss(_ball_blocks(0.55), target), surface_loss(_ball_blocks(0.7), target)
    # radii 0.05 and 0.2 apart in the grid frame are 0.175 and 0.7 voxels at side 8 (each way)
    assert 0.1 < near.item() < 0.6 and 1.0 < far.item() < 2.0
    pred = _ball_blocks(0.7).requires_grad_()
    surface_loss(pred, target).backward()
    moved = (pred - 0.05 * pred.grad.sign()).detach()  # a step against the gradient
    assert surface_loss(moved, target) < far
    assert surface_loss(_ball_blocks(2.0), target).item() == 0.0  # no decoded surface: nothing to pull


def _sorted(vertices: torch.Tensor) -> torch.Tensor:
    """Vertices in lexicographic order of their (detached) coordinates."""
    key = vertices.detach().double()
    order = torch.argsort(key[:, 0] * 1e8 + key[:, 1] * 1e4 + key[:, 2])
    return vertices[order]


def test_edge_crossings_are_the_dmc_vertices_of_every_block_with_their_gradient():
    from necgs.geometry.dmc import deformable_marching_cubes, volume_offsets
    from necgs.training.losses import edge_crossings

    torch.manual_seed(0)
    blocks = 0.5 * torch.randn(6, 4, 8, 8, 8)  # deformed planes with noise, one block without surface
    blocks[:, 0] = torch.linspace(-1, 1, 8)[:, None, None] + 0.3 * torch.randn(6, 1, 1, 1) + 0.2 * blocks[:, 0]
    blocks[2, 0] = 1.0
    ours, theirs = blocks.clone().requires_grad_(), blocks.clone().requires_grad_()
    owner, vertices = edge_crossings(ours)
    weights = []
    for b in range(len(blocks)):
        dmc, _ = deformable_marching_cubes(theirs[b, 0], volume_offsets(theirs[b]))
        dmc = _sorted(dmc * 3.5)  # grid frame [-1, 1] -> voxels of side 8, node 0 at -3.5
        mine = _sorted(vertices[owner == b] - 3.5)
        assert mine.shape == dmc.shape and (b == 2) == (len(dmc) == 0)
        assert torch.allclose(mine, dmc, atol=1e-5)
        w = torch.randn(dmc.shape)
        weights.append(((mine * w).sum(), (dmc * w).sum()))
    sum(m for m, _ in weights).backward()
    sum(d for _, d in weights).backward()
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-5) and ours.grad.abs().max() > 1e-2


def test_surface_loss_is_the_same_in_chunks(monkeypatch):
    import necgs.training.losses as losses

    target = _ball_blocks(0.5)
    pred = _ball_blocks(0.6) + 0.05 * torch.randn(3, 4, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    whole = surface_loss(pred, target)
    monkeypatch.setattr(losses, "_SURFACE_CHUNK", 1)  # one block per chunk
    assert surface_loss(pred, target).item() == pytest.approx(whole.item(), rel=1e-6)
