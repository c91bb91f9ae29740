"""Built-in procedural sets and data set discovery."""

import hashlib

import numpy as np
import pytest
import trimesh

from necgs.errors import ConfigError
from necgs.io.datasets import list_datasets, resolve_dataset
from necgs.io.loading import load_meshes
from necgs.io.procedural import PROCEDURAL_SETS, generate


def digest(meshes):
    h = hashlib.sha256()
    for m in meshes:
        h.update(m.vertices.tobytes() + m.faces.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(PROCEDURAL_SETS))
def test_procedural_sets_are_deterministic_closed_and_varied(name):
    a, b = generate(name, 3), generate(name, 3)
    assert digest(a) == digest(b)
    for m in a:
        t = trimesh.Trimesh(m.vertices, m.faces, process=False)
        assert t.is_watertight and t.volume > 0 and np.all(np.isfinite(m.vertices))
    assert not np.allclose(a[0].vertices.mean(0), a[1].vertices.mean(0)) or a[0].n_faces != a[1].n_faces
    assert 16 <= PROCEDURAL_SETS[name].count <= 64


def test_builtin_set_is_generated_on_first_use_and_reused():
    folder = resolve_dataset("cad")
    loaded = load_meshes(folder)
    assert len(loaded.meshes) == PROCEDURAL_SETS["cad"].count and not loaded.failures
    stamp = (folder / "cad_000.ply").stat().st_mtime_ns
    assert resolve_dataset("cad") == folder and (folder / "cad_000.ply").stat().st_mtime_ns == stamp


def test_real_sets_are_discovered(shared_data):
    found = {d.name: d.count for d in list_datasets() if d.kind == "real"}
    assert found["humans_ama"] == 88 and found["cad_trimesh"] == 14 and found["cad_thingi10k"] == 124
    assert resolve_dataset("humans_ama") == shared_data / "humans_ama"


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ConfigError, match="figures"):
        resolve_dataset("no-such-set")


def test_mixed_set_links_a_few_shapes_of_every_real_set(shared_data):
    info = {d.name: d for d in list_datasets()}["mixed"]
    folder = resolve_dataset("mixed")
    loaded = load_meshes(folder)
    assert len(loaded.meshes) == info.count == 24 and not loaded.failures
    assert {m.name.split("/")[0] for m in loaded.meshes} == {
        "humans_ama",
        "animals_sumner",
        "cad_thingi10k",
        "cad_trimesh",
    }
    assert all(p.is_symlink() and p.resolve().is_relative_to(shared_data.resolve()) for p in loaded.sources)
    assert loaded.source_bytes == [p.resolve().stat().st_size for p in loaded.sources]
    assert resolve_dataset("mixed") == folder
