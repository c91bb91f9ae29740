"""Mesh loading, validation, saving and safe zip extraction."""

import zipfile

import numpy as np
import pytest
import trimesh

from necgs.errors import MeshLoadError, NecgsError
from necgs.io.loading import (
    load_mesh,
    load_meshes,
    safe_extract_zip,
    save_mesh,
    weld_identical,
)
from necgs.io.mesh import Mesh
from necgs.io.ply import binary_ply_bytes


@pytest.fixture
def box() -> Mesh:
    b = trimesh.creation.box(extents=(1, 2, 3))
    return Mesh(b.vertices, b.faces, "box")


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".off", ".stl", ".glb", ".gltf"])
def test_formats_round_trip(tmp_path, box, suffix):
    path = save_mesh(box, tmp_path / f"box{suffix}")
    back = load_mesh(path)
    assert back.n_faces == box.n_faces and back.n_vertices == box.n_vertices
    if suffix != ".stl":  # indexed formats keep vertex and face order exactly
        assert np.allclose(back.vertices, box.vertices) and np.array_equal(back.faces, box.faces)
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


def test_saved_ply_is_the_canonical_binary_ply(tmp_path, box):
    data = save_mesh(box, tmp_path / "box.ply").read_bytes()
    header = data.index(b"end_header\n") + len(b"end_header\n")
    assert len(data) == binary_ply_bytes(box) == header + 12 * 8 + 13 * 12
    vertices = np.frombuffer(data[header : header + 96], "<f4").reshape(8, 3)
    faces = np.frombuffer(data[header + 96 :], dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    assert np.array_equal(vertices, box.vertices.astype(np.float32))
    assert np.all(faces["n"] == 3) and np.array_equal(faces["idx"], box.faces)


def test_stl_triangle_soup_is_welded_in_first_use_order(tmp_path, box):
    path = tmp_path / "soup.stl"
    box.to_trimesh().export(path)
    back = load_mesh(path)
    t = back.to_trimesh()
    assert back.n_vertices == 8 and t.is_watertight and np.isclose(t.volume, 6.0)
    soup = box.vertices[box.faces].reshape(-1, 3)
    v, f = weld_identical(soup, np.arange(len(soup)).reshape(-1, 3))
    assert np.array_equal(v[f].reshape(-1, 3), soup)
    assert np.array_equal(v[0], soup[0]) and np.unique(f[0]).size == 3


def test_scene_geometries_are_concatenated_with_their_transforms(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box())
    scene.add_geometry(trimesh.creation.icosphere(1), transform=trimesh.transformations.translation_matrix([5, 0, 0]))
    scene.export(tmp_path / "scene.glb")
    back = load_mesh(tmp_path / "scene.glb")
    assert back.n_faces == 12 + 80
    assert np.isclose(back.vertices[:, 0].max(), 6.0) and np.isclose(back.vertices[:, 0].min(), -0.5)


@pytest.mark.parametrize(
    "content,reason",
    [
        ("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "degenerate"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "out of bounds"),
        ("v 0 0 0\nv inf 0 0\nv 0 1 0\nf 1 2 3\n", "infinity"),
    ],
)
def test_invalid_geometry_is_refused(tmp_path, content, reason):
    (tmp_path / "bad.obj").write_text(content)
    with pytest.raises(MeshLoadError, match=reason):
        load_mesh(tmp_path / "bad.obj")


def test_files_over_the_size_limit_are_refused(tmp_path, box):
    path = save_mesh(box, tmp_path / "box.ply")
    with pytest.raises(MeshLoadError, match="limit"):
        load_mesh(path, max_bytes=100)


def test_names_from_a_list_of_files_are_unique(tmp_path, box):
    paths = [save_mesh(box, tmp_path / d / "part.ply") for d in ("a", "b")]
    loaded = load_meshes(paths)
    assert [m.name for m in loaded.meshes] == ["part", "part~2"] and loaded.sources == paths


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


def _patch_central_directory(zpath, offset: int, value: bytes) -> None:
    """Overwrite bytes of the first central-directory record (what zipfile trusts)."""
    data = bytearray(zpath.read_bytes())
    at = data.index(b"PK\x01\x02") + offset
    data[at : at + len(value)] = value
    zpath.write_bytes(bytes(data))


def test_zip_entry_lying_about_its_size_is_refused(tmp_path):
    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.obj", b"\0" * 2_000_000)
    _patch_central_directory(zpath, 24, (100).to_bytes(4, "little"))  # declared uncompressed size
    assert zipfile.ZipFile(zpath).infolist()[0].file_size == 100
    dest = tmp_path / "dest"
    with pytest.raises(NecgsError, match="bomb.zip.*cannot be extracted"):
        safe_extract_zip(zpath, dest, max_bytes=1000)
    assert not [p for p in dest.rglob("*") if p.is_file()]


def test_encrypted_zip_entry_is_refused(tmp_path):
    zpath = tmp_path / "locked.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("x.obj", "v 0 0 0\n")
    _patch_central_directory(zpath, 8, b"\x01")  # general purpose flag: encrypted
    with pytest.raises(NecgsError, match="locked.zip.*encrypted"):
        safe_extract_zip(zpath, tmp_path / "dest")


def test_zip_symlink_entry_is_refused(tmp_path):
    zpath = tmp_path / "link.zip"
    info = zipfile.ZipInfo("sneaky.obj")
    info.external_attr = 0o120777 << 16
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    dest = tmp_path / "dest"
    with pytest.raises(NecgsError, match="symbolic link"):
        safe_extract_zip(zpath, dest)
    assert not (dest / "sneaky.obj").exists()


def test_not_a_zip(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(NecgsError, match="fake.zip.*not a readable zip"):
        load_meshes(tmp_path / "fake.zip", extract_dir=tmp_path / "d")
