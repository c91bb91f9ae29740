"""Volumes as blocks in the fitting cache and in training: the same numbers as the dense volumes."""

import os

import numpy as np
import pytest
import torch
import trimesh

from necgs.config import FitConfig, TrainConfig
from necgs.geometry.block_volume import BlockVolume, VolumeSet
from necgs.geometry.fit import fit_volume, fit_volumes, fitted_volume, stored_volume
from necgs.io.mesh import Mesh
from necgs.model.decoder import decoder_config
from necgs.training.checkpoints import run_digest
from necgs.training.patches import BlockSampler, coarse_targets
from necgs.training.train import train_autodecoder


def fitted_set(K: int = 32) -> torch.Tensor:
    """(3, 4, K, K, K): short CPU fits of a sphere, a torus and a box (TSDF and deformations on the band)."""
    meshes = [
        trimesh.creation.icosphere(subdivisions=3, radius=0.55),
        trimesh.creation.torus(major_radius=0.5, minor_radius=0.2),
        trimesh.creation.box((0.9, 0.5, 1.2)),
    ]
    cfg = FitConfig(resolution=K, iterations=3, samples=2000, device="cpu")
    return torch.stack([fit_volume(np.asarray(m.vertices), np.asarray(m.faces), cfg) for m in meshes])


@pytest.fixture(scope="module")
def dense() -> torch.Tensor:
    return fitted_set()


def codec_numbers(codec) -> tuple:
    weights = tuple((name, q.symbols.tobytes(), q.spec) for name, q in sorted(codec.weights.items()))
    return weights, codec.features.symbols.tobytes(), codec.losses


@pytest.mark.parametrize("mode", ["patch", "dense"])
def test_training_on_blocks_is_training_on_the_dense_volumes(dense, mode):
    tcfg = TrainConfig(
        epochs=3, batch_size=2, checkpoint_every=0, device="cpu", mode=mode, block_size=8, blocks_per_shape=4
    )
    dcfg = decoder_config(32, 4, feature_channels=4)
    a = train_autodecoder(dense, dcfg, tcfg, progress=False)
    b = train_autodecoder(VolumeSet.from_dense(dense), dcfg, tcfg, progress=False)
    assert codec_numbers(a) == codec_numbers(b)


def test_the_run_digest_and_the_coarse_targets_do_not_depend_on_the_form(dense):
    tcfg, dcfg = TrainConfig(device="cpu"), decoder_config(32, 4, feature_channels=4)
    blocks = VolumeSet.from_dense(dense)
    assert run_digest(dense, dcfg, tcfg) == run_digest(blocks, dcfg, tcfg)
    assert torch.equal(coarse_targets(dense, 8), coarse_targets(blocks, 8))
    assert torch.equal(coarse_targets(dense, 8), torch.nn.functional.avg_pool3d(dense[:, :1], 4))


@pytest.mark.parametrize("unit", [1, 2, 4])
def test_the_sampler_finds_every_far_position_from_the_band_alone(dense, unit):
    sampler = BlockSampler(VolumeSet.from_dense(dense), 8, unit)
    touched = torch.nn.functional.max_pool3d((dense[:, :1].abs() < 1).float(), 8, stride=unit)[:, 0] > 0
    for s, row in enumerate(touched.reshape(len(dense), -1)):
        assert np.array_equal(sampler.band[s], row.nonzero()[:, 0].numpy())
        far = (~row).nonzero()[:, 0].tolist()
        assert [sampler._far(s, k) for k in range(len(far))] == far


def sphere_mesh() -> Mesh:
    s = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    return Mesh(np.asarray(s.vertices), np.asarray(s.faces), name="ball")


def test_the_cache_maps_blocks_and_reads_an_old_dense_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("NECGS_CACHE_DIR", str(tmp_path))
    mesh, cfg = sphere_mesh(), FitConfig(resolution=32, iterations=3, samples=2000, device="cpu")
    volume, _, seconds = stored_volume(mesh, cfg)
    assert seconds > 0 and isinstance(volume.data, np.memmap)
    (path,) = list(tmp_path.rglob("*.ncgv"))
    dense = volume.dense()
    # an entry written before the block form: the dense .npy, read once and replaced
    os.remove(path)
    np.save(path.with_suffix(".npy"), dense.numpy(), allow_pickle=False)
    again, _, seconds = fitted_volume(mesh, cfg)
    assert seconds == 0.0 and torch.equal(again, dense)
    assert path.is_file() and not path.with_suffix(".npy").exists()
    fitted = fit_volumes([mesh, mesh], cfg, progress=False)
    assert fitted.seconds == [0.0, 0.0] and torch.equal(fitted.volumes[1], dense)
    # a damaged entry is fitted again (the same fit up to the threads' float sums) and stored
    path.write_bytes(path.read_bytes()[:50])
    volume, _, seconds = stored_volume(mesh, cfg)
    assert seconds > 0 and torch.equal(BlockVolume.open(path).dense(), volume.dense())
    assert (volume.dense()[0] > 0).eq(dense[0] > 0).float().mean() > 0.999


def test_without_the_cache_the_blocks_stay_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("NECGS_CACHE_DIR", str(tmp_path))
    fitted = fit_volumes([sphere_mesh()], FitConfig(resolution=16, backend="none"), cache=False, progress=False)
    assert not isinstance(fitted.volumes.volumes[0].data, np.memmap) and not list(tmp_path.rglob("*.ncgv"))
