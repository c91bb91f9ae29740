"""App handlers called directly on tiny data; importing and building the page does no work."""

import zipfile

import pytest

from necgs import webapp
from necgs.errors import NecgsError
from necgs.evaluation import ResultsStore


def test_build_demo_has_no_side_effects():
    before = len(ResultsStore().list_runs())
    demo = webapp.build_demo()
    assert demo is not None and len(ResultsStore().list_runs()) == before


def test_upload_staging_confines_zips_and_skips_non_meshes(tmp_path, shared_data):
    good = shared_data / "cad_trimesh" / "featuretype.STL"
    zpath = tmp_path / "up.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(good, "parts/featuretype.stl")
        zf.writestr("notes.txt", "hello")
    folder, notes = webapp.stage_upload([str(zpath), str(good)], tmp_path / "session")
    assert (folder / "featuretype.STL").is_file() and (folder / "up" / "parts" / "featuretype.stl").is_file()
    assert any("notes.txt" in n for n in notes)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape.obj", "v 0 0 0\n")
    with pytest.raises(NecgsError, match="outside"):
        webapp.stage_upload([str(evil)], tmp_path / "session2")
    assert not (tmp_path / "escape.obj").exists()
    with pytest.raises(NecgsError, match="no files"):
        webapp.stage_upload([], tmp_path / "s3")


@pytest.fixture(scope="module")
def run():
    setting = webapp.necgs_settings("tiny", "quick", True, True, False, 120)
    return webapp.execute_run("cad", ["necgs", "draco"], setting, limit=2, n_samples=3000)


def test_a_tiny_run_fills_every_view(run):
    fig_cd, fig_f1, table, per_shape, shapes, nec, others = webapp.run_views(run)
    assert set(table.codec) == {"floor", "necgs", "draco"} and len(per_shape) == 2 * (1 + len(others))
    assert len(fig_cd.data) >= 2 and shapes == ["cad_000", "cad_001"] and nec == ["necgs::quick tiny"]
    orig, necgs_glb, other_glb, legend = webapp.viewer_files(run, shapes[0], nec[0], others[0], "t")
    for path in (orig, necgs_glb, other_glb):
        assert path and open(path, "rb").read(4) == b"glTF"
    assert "distance" in legend
    archive, decoded = webapp.downloads(run, "t")
    assert archive.endswith(".ncgs") and zipfile.ZipFile(decoded).namelist() == ["cad_000.ply", "cad_001.ply"]
    webapp.end_session("t")
    assert "t" not in webapp._SESSIONS


def test_reviewer_figure_renders_offscreen(run):
    png = webapp.reviewer_figure(run, "cad_000", "necgs::quick tiny", "fig")
    data = open(png, "rb").read()
    assert data[:4] == b"\x89PNG" and len(data) > 5000
