"""Defective real meshes and a 1M-face mesh go through the pipeline without crashing."""

import resource

import numpy as np
import pytest
import trimesh

from necgs.compression import compress, decompress
from necgs.config import FitConfig, NecgsConfig, TrainConfig
from necgs.geometry.fit import fitted_volume
from necgs.io.loading import load_meshes
from necgs.io.mesh import Mesh

TINY = NecgsConfig(
    fit=FitConfig(resolution=16, iterations=5, samples=2000, device="cpu"),
    width=4,
    train=TrainConfig(epochs=3, checkpoint_every=0, device="cpu"),
)


@pytest.mark.parametrize(
    "name,files", [("cad_thingi10k", 124), ("cad_trimesh", 14), ("animals_sumner", 66), ("humans_ama", 88)]
)
def test_every_shared_mesh_compresses_and_decodes_or_is_reported(shared_data, tmp_path, name, files):
    loaded = load_meshes(shared_data / name)
    assert all(f.reason for f in loaded.failures)
    result = compress(loaded, tmp_path / "set.ncgs", TINY, progress=lambda *a: None, checkpoint_dir=tmp_path / "c")
    decoded = decompress(result.path)
    assert [m.name for m in decoded] == [m.name for m in loaded.meshes]
    assert len(decoded) + len(loaded.failures) == files
    assert all(np.all(np.isfinite(m.vertices)) for m in decoded)


def test_open_horse_gets_a_sensible_closed_inside(shared_data):
    """The Sumner horses have a hole; the voted sign still gives a closed solid of the right volume."""
    import torch

    from necgs.geometry.dmc import mesh_from_volume
    from necgs.geometry.tsdf import tsdf_volume
    from necgs.io.mesh import fit_transform

    horse = load_meshes([shared_data / "animals_sumner" / "horse-gallop" / "0001.ply"]).meshes[0]
    t = trimesh.Trimesh(horse.vertices, horse.faces, process=False)
    assert not t.is_watertight
    frame = fit_transform(horse.vertices, 0.9)
    tsdf = torch.from_numpy(tsdf_volume(frame.apply(horse.vertices), horse.faces, 64))
    solid = mesh_from_volume(torch.cat([tsdf[None], torch.zeros(3, 64, 64, 64)])).to_trimesh()
    assert solid.is_watertight
    expected = abs(t.volume) * frame.scale**3  # a small hole barely changes the divergence-theorem volume
    assert abs(solid.volume / expected - 1) < 0.1


def test_a_million_faces_fit_within_memory():
    sphere = trimesh.creation.icosphere(subdivisions=8)  # 1,310,720 faces
    mesh = Mesh(sphere.vertices, sphere.faces, "big")
    assert mesh.n_faces > 1_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    vol, _, _ = fitted_volume(mesh, FitConfig(resolution=32, iterations=5, samples=5000, device="cpu"), cache=False)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert vol.shape == (4, 32, 32, 32) and float(vol[0].min()) < 0
    assert grown_mb < 3000
