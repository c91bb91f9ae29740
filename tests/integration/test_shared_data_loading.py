"""Every file in ../shared/data either loads or is reported with a reason."""

import pytest

from necgs.io.loading import MESH_SUFFIXES, load_meshes

EXPECTED = {"humans_ama": 88, "animals_sumner": 66, "cad_thingi10k": 124, "cad_trimesh": 14}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_shared_file_loads_or_has_a_reason(shared_data, name):
    folder = shared_data / name
    mesh_files = [p for p in folder.rglob("*") if p.suffix.lower() in MESH_SUFFIXES]
    loaded = load_meshes(folder)
    assert len(loaded.meshes) + len(loaded.failures) == len(mesh_files)  # README/csv/txt ignored
    assert all(f.reason.strip() and "\n" not in f.reason for f in loaded.failures)
    assert len(loaded.meshes) == EXPECTED[name] and not loaded.failures
    assert loaded.source_bytes == [p.stat().st_size for p in loaded.sources]
    assert len({m.name for m in loaded.meshes}) == len(loaded.meshes)


def test_stl_soups_are_welded_into_indexed_meshes(shared_data):
    """Thingi10K STL files store a triangle soup; loading shares the identical corners."""
    loaded = load_meshes(shared_data / "cad_thingi10k")
    vertices = sum(m.n_vertices for m in loaded.meshes)
    faces = sum(m.n_faces for m in loaded.meshes)
    assert vertices < 0.7 * faces  # a closed surface has about F/2 vertices; a soup would have 3F
