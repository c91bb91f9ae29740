"""Baseline codecs behind the one interface: registry, availability, rate knobs, round trips."""

import os
import stat

import pytest
import trimesh

from necgs.baselines import mpeg
from necgs.baselines.base import codec_names, get_codec
from necgs.errors import ConfigError, DependencyError
from necgs.io.loading import load_meshes
from necgs.io.mesh import Mesh
from necgs.metrics import compare_meshes

N = 20_000


@pytest.fixture(scope="module")
def ama(shared_data):
    return load_meshes(shared_data / "humans_ama" / "crane").meshes[:2]


@pytest.fixture(scope="module")
def cad(shared_data):
    return load_meshes(shared_data / "cad_trimesh").meshes[:3]


def test_registry():
    names = codec_names()
    known = ("necgs", "draco", "decimate-draco", "pointcloud-spsr", "quantdeepsdf", "gpcc", "gpcc-trisoup", "vpcc")
    for n in (*known, "pcgcv2"):
        assert n in names
    with pytest.raises(ConfigError, match="unknown codec"):
        get_codec("zip")


@pytest.mark.parametrize("name", ["draco", "decimate-draco"])
def test_mesh_codecs_on_real_meshes(name, ama, cad):
    codec = get_codec(name)
    assert codec.available()[0]
    sweep = codec.sweep()
    sizes = []
    for setting in (sweep[0], sweep[-1]):
        blobs = codec.encode(ama + cad, setting)
        decoded = codec.decode(blobs, setting)
        assert len(decoded) == len(ama + cad)
        sizes.append(sum(map(len, blobs)))
        if setting is sweep[0]:
            for rec, gt in zip(decoded, ama + cad):
                floor = compare_meshes(gt, gt, N).cd
                assert compare_meshes(rec, gt, N).cd < floor * 1.3 + 1e-3
    assert sizes[1] < sizes[0]  # the knob trades bytes


def test_pointcloud_poisson_on_real_meshes(ama, cad):
    codec = get_codec("pointcloud-spsr")
    setting = codec.sweep()[1]
    decoded = codec.decode(codec.encode([ama[0], cad[1]], setting), setting)
    for rec, gt in zip(decoded, [ama[0], cad[1]]):
        assert rec.n_faces > 100
        assert compare_meshes(rec, gt, N).cd < 0.03


def test_unavailable_codecs_say_why(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(mpeg, "TOOL_DIRS", ())  # no tmc3 built in the checkout either
    for name, needle in (
        ("gpcc", "tmc3 not installed"),
        ("gpcc-trisoup", "tmc3 not installed"),
        ("vpcc", "PccAppEncoder, PccAppDecoder not installed"),
        ("pcgcv2", "MinkowskiEngine"),
    ):
        ok, why = get_codec(name).available()
        assert not ok and needle in why and "\n" not in why
        with pytest.raises(DependencyError, match=needle):
            get_codec(name).encode([], {"depth": 8, "points": 100})
    assert "HM video codec" in get_codec("vpcc").available()[1]


def fake_tmc3(folder, body: str = ""):
    """A stand-in tmc3 in ``folder``: runs ``body`` (Python), then copies points through."""
    fake = folder / "tmc3"
    fake.write_text(
        "#!/usr/bin/env python3\n"
        "import sys, shutil, time\n"
        f"{body}\n"
        "a = dict(x.lstrip('-').split('=', 1) for x in sys.argv[1:])\n"
        "if a['mode'] == '0': shutil.copy(a['uncompressedDataPath'], a['compressedStreamPath'])\n"
        "else: shutil.copy(a['compressedStreamPath'], a['reconstructedDataPath'])\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)


def test_gpcc_adapter_runs_a_tool_found_on_path(tmp_path, monkeypatch):
    """A stand-in tmc3 that copies points through exercises the real plumbing."""
    fake_tmc3(tmp_path)
    monkeypatch.setattr(mpeg, "TOOL_DIRS", ())  # the stand-in, not a tmc3 built in the checkout
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    codec = get_codec("gpcc")
    assert codec.available()[0]
    s = trimesh.creation.icosphere(subdivisions=4)
    mesh = Mesh(s.vertices, s.faces, "sphere")
    setting = {"depth": 8, "points": 8000}
    decoded = codec.decode(codec.encode([mesh], setting), setting)
    assert compare_meshes(decoded[0], mesh, N).cd < 0.03


@pytest.mark.parametrize(
    "body,needle",
    [
        ("print('tmc3: broken input', file=sys.stderr); sys.exit(3)", "failed on shape 1 (t1) with exit code 3"),
        ("time.sleep(60)", "took longer than 10 s on shape 1 (t1)"),
    ],
)
def test_failing_or_hanging_tmc3_is_one_line_and_the_run_goes_on(tmp_path, monkeypatch, body, needle):
    """A tmc3 that fails or hangs on one shape: one line naming the codec and the shape; the other codecs run."""
    from necgs.evaluation.runner import evaluate
    from necgs.io.loading import LoadedSet

    fake_tmc3(tmp_path, f"if sys.argv[1] == '--mode=0' and sys.argv[2].endswith('1.ply'):\n    {body}")
    monkeypatch.setattr(mpeg, "TOOL_DIRS", ())
    monkeypatch.setattr(mpeg, "TIMEOUT", 10)  # a stand-in's start takes seconds on a loaded machine
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    tori = [trimesh.creation.torus(1 + 0.2 * i, 0.3) for i in range(2)]
    shapes = LoadedSet([Mesh(t.vertices, t.faces, f"t{i}") for i, t in enumerate(tori)], [], [], [50_000, 50_000])
    setting = {"depth": 7, "points": 4000}
    result = evaluate(shapes, ["gpcc", "draco"], settings={"gpcc": [setting], "draco": [{"bits": 10}]}, n_samples=2000)
    rows = result.summary.set_index("codec")
    assert rows.loc["gpcc", "status"] == "error" and rows.loc["draco", "status"] == "ok"
    error = rows.loc["gpcc", "error"]
    assert error.startswith("NecgsError: gpcc: tmc3 ") and needle in error and "\n" not in error


def test_quantdeepsdf_round_trip():
    t = trimesh.creation.torus(major_radius=1.0, minor_radius=0.35, major_sections=32, minor_sections=16)
    mesh = Mesh(t.vertices, t.faces, "torus")
    codec = get_codec("quantdeepsdf")
    setting = {"width": 32, "resolution": 16, "steps": 600}
    blobs = codec.encode([mesh], setting)
    assert len(blobs) == 1
    decoded = codec.decode(blobs, setting)
    assert compare_meshes(decoded[0], mesh, N).cd < 0.08  # an untrained or broken MLP gives no surface (inf)


def test_a_flat_decoded_cloud_gives_an_empty_shape_not_a_lost_setting():
    """A coarse octree of a flat part decodes to coplanar points: Qhull refuses to orient their
    normals, and that shape (not the codec's whole setting) comes back empty."""
    import numpy as np

    from necgs.baselines.pointcloud import poisson_mesh

    grid = np.stack(np.meshgrid(np.linspace(0, 1, 20), np.linspace(0, 1, 20), indexing="ij"), -1).reshape(-1, 2)
    flat = poisson_mesh(np.c_[grid, np.zeros(len(grid))], name="plate")
    assert flat.n_faces == 0 and flat.name == "plate"
    assert poisson_mesh(np.zeros((2, 3))).n_faces == 0  # too few points
    sphere = np.random.default_rng(0).normal(size=(500, 3))
    assert poisson_mesh(sphere / np.linalg.norm(sphere, axis=1, keepdims=True)).n_faces > 100
