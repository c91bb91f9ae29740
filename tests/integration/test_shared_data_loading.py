"""Every file in ../shared/data either loads or is reported with a reason."""

import pytest

from necgs.io.loading import MESH_SUFFIXES, load_meshes

EXPECTED = {"humans_ama": 88, "animals_sumner": 66, "cad_thingi10k": 124, "cad_trimesh": 14}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_shared_file_loads_or_has_a_reason(shared_data, name):
    folder = shared_data / name
    mesh_files = [p for p in folder.rglob("*") if p.suffix.lower() in MESH_SUFFIXES]
    loaded = load_meshes(folder)
    assert len(loaded.meshes) + len(loaded.failures) == len(mesh_files)
    assert all(f.reason.strip() and "\n" not in f.reason for f in loaded.failures)
    assert len(loaded.meshes) == EXPECTED[name]
    assert len({m.name for m in loaded.meshes}) == len(loaded.meshes)
