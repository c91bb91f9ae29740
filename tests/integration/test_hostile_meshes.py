"""Defective real meshes and a 1M-face mesh go through the pipeline without crashing."""

import resource

import numpy as np
import trimesh

from necgs.config import NecgsConfig
from necgs.geometry.fit import FitConfig, fitted_volume
from necgs.io.loading import load_meshes
from necgs.io.mesh import Mesh
from necgs.pipeline import compress, decompress
from necgs.training.train import TrainConfig

TINY = NecgsConfig(fit=FitConfig(resolution=16, iterations=5, samples=2000, device="cpu"), width=4,
                   train=TrainConfig(epochs=3, checkpoint_every=0, device="cpu"))


def test_every_thingi10k_file_compresses_and_decodes_or_is_reported(shared_data, tmp_path):
    loaded = load_meshes(shared_data / "cad_thingi10k")
    assert all(f.reason for f in loaded.failures)
    result = compress(loaded, tmp_path / "thingi.ncgs", TINY, progress=lambda *a: None, checkpoint_dir=tmp_path / "c")
    decoded = decompress(result.path)
    assert [m.name for m in decoded] == [m.name for m in loaded.meshes]
    assert len(decoded) + len(loaded.failures) == 124
    assert all(np.all(np.isfinite(m.vertices)) for m in decoded)


def test_a_million_faces_fit_within_memory():
    sphere = trimesh.creation.icosphere(subdivisions=8)  # 1,310,720 faces
    mesh = Mesh(sphere.vertices, sphere.faces, "big")
    assert mesh.n_faces > 1_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    vol, _, _ = fitted_volume(mesh, FitConfig(resolution=32, iterations=5, samples=5000, device="cpu"), cache=False)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert vol.shape == (4, 32, 32, 32) and float(vol[0].min()) < 0
    assert grown_mb < 3000
