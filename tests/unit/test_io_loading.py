"""Mesh loading, validation, saving and safe zip extraction."""

import zipfile

import numpy as np
import pytest
import trimesh

from necgs.errors import MeshLoadError, NecgsError
from necgs.io.loading import load_mesh, load_meshes, safe_extract_zip, save_mesh
from necgs.io.mesh import Mesh


@pytest.fixture
def box() -> Mesh:
    b = trimesh.creation.box(extents=(1, 2, 3))
    return Mesh(b.vertices, b.faces, "box")


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".off", ".stl", ".glb"])
def test_formats_round_trip(tmp_path, box, suffix):
    path = save_mesh(box, tmp_path / f"box{suffix}")
    back = load_mesh(path)
    assert back.n_faces == box.n_faces
    assert np.allclose(back.vertices.min(0), box.vertices.min(0), atol=1e-6)
    assert np.allclose(back.vertices.max(0), box.vertices.max(0), atol=1e-6)
    assert np.isclose(back.to_trimesh().area, box.to_trimesh().area)


def test_quads_are_triangulated(tmp_path):
    (tmp_path / "quad.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
    assert load_mesh(tmp_path / "quad.obj").n_faces == 2


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("nan.obj", "v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n", "NaN"),
        ("points.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", ""),
        ("empty.stl", "", "empty"),
        ("garbage.ply", "this is not a ply file at all\n", ""),
        ("notes.txt", "hello", "unsupported format"),
    ],
)
def test_bad_files_give_one_line_reasons_naming_the_file(tmp_path, name, content, reason):
    (tmp_path / name).write_text(content)
    with pytest.raises(MeshLoadError) as err:
        load_mesh(tmp_path / name)
    message = str(err.value)
    assert name in message and "\n" not in message and reason in message


def test_missing_file(tmp_path):
    with pytest.raises(MeshLoadError, match="no such file"):
        load_mesh(tmp_path / "nope.obj")


def test_folder_loads_good_files_and_reports_bad_ones(tmp_path, box):
    save_mesh(box, tmp_path / "a" / "one.ply")
    save_mesh(box, tmp_path / "b" / "two.obj")
    (tmp_path / "b" / "bad.obj").write_text("v 0 0 0\n")
    (tmp_path / "README.md").write_text("not a mesh, ignored")
    loaded = load_meshes(tmp_path)
    assert [m.name for m in loaded.meshes] == ["a/one", "b/two"]
    assert len(loaded.failures) == 1 and "bad.obj" in loaded.failures[0].source
    assert loaded.source_bytes[0] == (tmp_path / "a" / "one.ply").stat().st_size


def test_zip_loads(tmp_path, box):
    save_mesh(box, tmp_path / "src" / "x.ply")
    zpath = tmp_path / "set.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(tmp_path / "src" / "x.ply", "inner/x.ply")
    loaded = load_meshes(zpath, extract_dir=tmp_path / "out")
    assert [m.name for m in loaded.meshes] == ["inner/x"]


@pytest.mark.parametrize("entry", ["../evil.obj", "/abs/evil.obj", "a/../../evil.obj"])
def test_zip_traversal_is_refused_and_nothing_escapes(tmp_path, entry):
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("ok.obj", "v 0 0 0\n")
        zf.writestr(entry, "v 0 0 0\n")
    dest = tmp_path / "dest"
    with pytest.raises(NecgsError, match="outside"):
        safe_extract_zip(zpath, dest)
    assert not (tmp_path / "evil.obj").exists()
    assert not any(dest.rglob("*.obj")) if dest.exists() else True


def test_zip_limits(tmp_path):
    zpath = tmp_path / "many.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(5):
            zf.writestr(f"f{i}.obj", "0" * 100_000)
    with pytest.raises(NecgsError, match="entries"):
        safe_extract_zip(zpath, tmp_path / "d1", max_files=3)
    with pytest.raises(NecgsError, match="MB"):
        safe_extract_zip(zpath, tmp_path / "d2", max_bytes=200_000)
