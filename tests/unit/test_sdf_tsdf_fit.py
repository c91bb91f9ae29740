"""Signed distance, TSDF volumes and TSDF-Def fitting."""

import numpy as np
import pytest
import torch
import trimesh

from necgs.config import FitConfig
from necgs.errors import ConfigError, MeshError
from necgs.geometry.dmc import mesh_from_volume
from necgs.geometry.fit import fit_volumes, fitted_volume
from necgs.geometry.sdf import signed_distance, unsigned_distance
from necgs.geometry.tsdf import grid_points, tsdf_volume, voxel_size
from necgs.io.mesh import Mesh, fit_transform
from necgs.metrics import compare_meshes


def icosphere(radius=0.5, subdivisions=4):
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return s.vertices, s.faces


def test_sphere_tsdf_matches_closed_form():
    v, f = icosphere()
    K = 16
    vol = tsdf_volume(v, f, K)
    exact = np.clip((np.linalg.norm(grid_points(K), axis=1) - 0.5) / (2 * voxel_size(K)), -1, 1)
    assert np.abs(vol.reshape(-1) - exact).max() < 0.05  # icosphere facets vs the true sphere


def test_sign_survives_a_hole():
    v, f = icosphere()
    keep = v[f].mean(1)[:, 2] < 0.45  # cut a cap off: the mesh is open
    pts = np.array([[0, 0, 0], [0.1, 0.1, 0], [0.9, 0, 0]], dtype=np.float32)
    d = signed_distance(v, f[keep], pts)
    assert d[0] < 0 and d[1] < 0 and d[2] > 0


def test_lone_sheet_becomes_a_thin_shell():
    v = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    vol = tsdf_volume(v, f, 16)
    assert vol.min() < 0  # something is inside, so a surface is extracted
    assert mesh_from_volume(torch.cat([torch.from_numpy(vol)[None], torch.zeros(3, 16, 16, 16)])).n_faces > 0


@pytest.mark.parametrize("K", [0, 7, 48, 512, "64"])
def test_bad_resolution(K):
    v, f = icosphere()
    with pytest.raises(ConfigError, match="power of two"):
        tsdf_volume(v, f, K)


def test_bad_meshes():
    with pytest.raises(MeshError):
        tsdf_volume(np.zeros((0, 3)), np.zeros((0, 3), int), 16)
    v, f = icosphere()
    v = v.copy()
    v[0, 0] = np.nan
    with pytest.raises(MeshError, match="non-finite"):
        tsdf_volume(v, f, 16)


def test_config_validation():
    with pytest.raises(ConfigError):
        FitConfig(backend="magic").validate()
    with pytest.raises(ConfigError):
        FitConfig(iterations=-1).validate()
    assert FitConfig().cache_key() != FitConfig(iterations=3).cache_key()
    assert FitConfig().cache_key() == FitConfig(device="cpu").cache_key()


def test_fitting_beats_plain_tsdf_and_is_cached():
    torus = trimesh.creation.torus(major_radius=1.0, minor_radius=0.18, major_sections=48, minor_sections=24)
    mesh = Mesh(torus.vertices, torus.faces, "torus")
    plain = FitConfig(resolution=16, backend="none")
    fitted = FitConfig(resolution=16, iterations=40, samples=5000)
    results = {}
    for cfg in (plain, fitted):
        vol, tr, _ = fitted_volume(mesh, cfg, cache=False)
        assert vol.shape == (4, 16, 16, 16) and vol.abs().max() <= 1.0
        results[cfg.backend] = compare_meshes(mesh_from_volume(vol).transformed(tr, inverse=True), mesh, 20_000)
    assert results["points"].cd < 0.8 * results["none"].cd
    first = fit_volumes([mesh], fitted, progress=False)
    again = fit_volumes([mesh], fitted, progress=False)
    assert torch.equal(first.volumes.dense(), again.volumes.dense()) and again.seconds == [0.0]


def test_sharding_covers_every_shape_once():
    meshes = [Mesh(*icosphere(0.3 + 0.1 * i, 2), name=f"s{i}") for i in range(5)]
    cfg = FitConfig(resolution=8, backend="none")
    parts = [fit_volumes(meshes, cfg, progress=False, rank=r, world_size=2).names for r in range(2)]
    assert sorted(parts[0] + parts[1]) == [m.name for m in meshes] and not set(parts[0]) & set(parts[1])


def test_nvdiffrast_backend_says_what_is_missing():
    from necgs.errors import DependencyError

    v, f = icosphere()
    with pytest.raises(DependencyError, match="nvdiffrast"):
        fitted_volume(Mesh(v, f), FitConfig(resolution=8, backend="nvdiffrast", device="cpu"), cache=False)


def test_fitting_in_two_threads_gives_the_same_volumes_in_the_same_order():
    from necgs.config import FitConfig
    from necgs.geometry.fit import fit_volumes
    from necgs.io.procedural import generate

    meshes = generate("cad", 3)
    cfg = FitConfig(resolution=16, iterations=5, samples=2000, device="cpu")
    one = fit_volumes(meshes, cfg, cache=False, progress=False, workers=1)
    calls = []
    two = fit_volumes(meshes, cfg, cache=False, progress=lambda d, n: calls.append((d, n)), workers=2)
    assert two.names == one.names == [m.name for m in meshes]
    assert torch.equal(one.volumes.dense(), two.volumes.dense())
    assert calls == [(1, 3), (2, 3), (3, 3)]


def _boxes(*specs):
    """One mesh of axis-aligned boxes, each (extents, centre)."""
    parts = [trimesh.creation.box(extents=e, transform=trimesh.transformations.translation_matrix(c)) for e, c in specs]
    return trimesh.util.concatenate(parts)


def test_an_ear_thinner_than_a_voxel_survives_as_a_slab_only_with_thin_parts_on():
    K = 32
    h = voxel_size(K)
    # a thick body (x < 0) with a thin plate (an ear) sticking out along +x at z = 0.007
    body = _boxes(((0.8, 0.8, 0.8), (-0.4, 0.0, 0.0)), ((0.9, 0.6, 0.2 * h), (0.45, 0.013, 0.007)))
    off = tsdf_volume(body.vertices, body.faces, K)
    on = tsdf_volume(body.vertices, body.faces, K, thin_voxels=0.55)
    ear = grid_points(K)[:, 0].reshape(K, K, K) > 0.15  # nodes beside the plate, away from the body
    assert (off[ear] > 0).all()  # no node is inside the plate: it vanishes
    assert (on[ear] < 0).any()
    assert np.array_equal(
        on[grid_points(K)[:, 0].reshape(K, K, K) < -0.1], off[grid_points(K)[:, 0].reshape(K, K, K) < -0.1]
    )
    mesh = mesh_from_volume(torch.cat([torch.from_numpy(on)[None], torch.zeros(3, K, K, K)]))
    plate = mesh.vertices[mesh.vertices[:, 0] > 0.2]
    assert len(plate) > 50 and np.abs(plate[:, 2] - 0.007).max() < 1.1 * h  # a slab around the plate


def test_thick_parts_and_narrow_gaps_keep_their_sign_with_thin_parts_on():
    K = 32
    h = voxel_size(K)
    two = _boxes(((0.6, 1.0, 1.0), (-0.33 - 0.15 * h, 0, 0)), ((0.6, 1.0, 1.0), (0.33 + 0.15 * h, 0, 0)))
    off = tsdf_volume(two.vertices, two.faces, K)
    on = tsdf_volume(two.vertices, two.faces, K, thin_voxels=0.55)
    assert np.array_equal(on, off)  # thick boxes with a gap narrower than a voxel between them


def test_thin_part_setting_is_validated_and_keys_the_cache():
    with pytest.raises(ConfigError, match="thin-part"):
        FitConfig(thin_voxels=3).validate()
    assert FitConfig().cache_key() != FitConfig(thin_voxels=0.55).cache_key()


def _full_query_tsdf(v, f, K, thin_voxels=0.0):
    """tsdf_volume as it was: the signed distance queried at every node."""
    h = voxel_size(K)
    sdf = signed_distance(v, f, grid_points(K), shell=0.5 * h, thin=thin_voxels * h, probe=h)
    return np.clip(sdf / (2 * h), -1, 1).reshape(K, K, K).astype(np.float32)


def test_tsdf_queries_distances_near_the_surface_only_and_equals_the_full_query():
    from necgs.geometry.tsdf import near_nodes

    v, f = icosphere(0.7)
    keep = v[f].mean(1)[:, 2] < 0.6  # an open mesh: the sign comes from the vote
    K = 64
    h = voxel_size(K)
    near = near_nodes(v, f[keep], K, 2.5 * h)
    assert 0.05 < near.mean() < 0.25  # a fraction of the K^3 nodes
    distance = unsigned_distance(v, f[keep], grid_points(K)).reshape(K, K, K)
    assert near[distance < 2.5 * h].all() and not near[distance > 9 * h].any()
    assert np.array_equal(tsdf_volume(v, f[keep], K), _full_query_tsdf(v, f[keep], K))


def test_tsdf_near_the_surface_only_keeps_thin_parts_and_lone_sheets():
    K = 32
    h = voxel_size(K)
    body = _boxes(((0.8, 0.8, 0.8), (-0.4, 0.0, 0.0)), ((0.9, 0.6, 0.2 * h), (0.45, 0.013, 0.007)))
    for thin in (0.0, 0.55, 2.0):
        assert np.array_equal(
            tsdf_volume(body.vertices, body.faces, K, thin_voxels=thin),
            _full_query_tsdf(body.vertices, body.faces, K, thin),
        )
    sheet = (
        np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], float),
        np.array([[0, 1, 2], [0, 2, 3]]),
    )
    assert np.array_equal(tsdf_volume(*sheet, K), _full_query_tsdf(*sheet, K))


def test_adam_never_moves_a_value_further_than_the_travel_bound():
    from necgs.geometry.fit import BETAS, adam_travel, band_margin
    from necgs.optim import Adam

    cfg = FitConfig(iterations=200, lr=0.02, lr_decay=0.1)
    n = 4000
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(n + 1, requires_grad=True)
    opt = Adam([{"params": [x], "lr": cfg.lr}], betas=BETAS)
    decay = cfg.lr_decay ** (1 / cfg.iterations)
    start = torch.randint(0, 150, (n,), generator=gen)  # first gradient at a random step
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    for k in range(cfg.iterations):
        scale = torch.rand(n, generator=gen) ** 4 * 10.0 ** torch.randint(-6, 3, (n,), generator=gen)
        noisy = torch.where(k >= start, sign * scale, 0.0)  # one direction, wildly varying sizes
        growing = torch.tensor([(BETAS[1] / BETAS[0]) ** k])  # the worst case: it reaches the bound
        x.grad = torch.cat([noisy, growing])
        opt.param_groups[0]["lr"] = cfg.lr * decay**k
        opt.step()
    moved = x.detach().abs()
    assert moved[:n].max() <= adam_travel(cfg) and abs(moved[n] / adam_travel(cfg) - 1) < 1e-4
    assert band_margin(cfg) == int(adam_travel(cfg)) + 1 == 3 and band_margin(FitConfig()) == 1


@pytest.mark.parametrize(("K", "iterations", "lr"), [(32, 25, 0.01), (16, 120, 0.05)])
def test_fitting_the_band_gives_the_dense_fit(K, iterations, lr):
    from necgs.geometry.fit import band_margin, fit_volume

    torus = trimesh.creation.torus(major_radius=1.0, minor_radius=0.18, major_sections=48, minor_sections=24)
    mesh = Mesh(torus.vertices, torus.faces, "torus")
    cfg = FitConfig(resolution=K, iterations=iterations, lr=lr, samples=3000, device="cpu")
    v = fit_transform(mesh.vertices, cfg.fill).apply(mesh.vertices)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the dense fit itself differs in float rounding from run to run on several threads
    try:
        band = fit_volume(v, mesh.faces, cfg)
        dense = fit_volume(v, mesh.faces, cfg, dense=True)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(band, dense)
    plain = torch.from_numpy(tsdf_volume(v, mesh.faces, K))
    assert (band[0] != plain).any() and band[1:].abs().max() > 0.02  # the fit moved things
    assert iterations < 100 or band_margin(cfg) > 1
