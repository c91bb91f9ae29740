"""The RD runner, its outputs and the results store."""

import json

import numpy as np
import pytest
import trimesh

from necgs.baselines.base import _REGISTRY, Codec, register_codec
from necgs.evaluation.figures import rd_figure
from necgs.evaluation.report import write_results
from necgs.evaluation.runner import evaluate
from necgs.evaluation.runs import RunStore
from necgs.io.loading import LoadedSet
from necgs.io.mesh import Mesh


def tiny_set() -> LoadedSet:
    meshes = []
    for i in range(2):
        t = trimesh.creation.torus(major_radius=1 + 0.2 * i, minor_radius=0.3, major_sections=24, minor_sections=12)
        meshes.append(Mesh(t.vertices, t.faces, f"t{i}"))
    return LoadedSet(meshes, [], [], [50_000, 50_000])


@pytest.fixture
def broken_codec():
    @register_codec
    class Broken(Codec):
        name, label, knob = "broken", "Broken", "x"

        def sweep(self):
            return [{"x": 1}]

        def encode(self, meshes, setting, progress=None, cancel=None):
            raise RuntimeError("encoder exploded")

        def decode(self, blobs, setting, progress=None, cancel=None):
            return []

    yield "broken"
    _REGISTRY.pop("broken")


def test_runner_rows_outputs_and_store(tmp_path, broken_codec, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("necgs.baselines.mpeg.TOOL_DIRS", ())  # no tmc3 built in the checkout either
    result = evaluate(
        tiny_set(), ["draco", "broken", "gpcc"], settings={"draco": [{"bits": 12}, {"bits": 7}]}, n_samples=3000
    )
    s = result.summary
    assert list(s.codec) == ["floor", "draco", "draco", "broken"]
    draco = s[s.codec == "draco"]
    assert (draco.status == "ok").all() and draco.bytes.iloc[0] > draco.bytes.iloc[1]
    assert (draco.ratio_files > 1).all() and (draco.cd > 0).all()
    assert s[s.codec == "broken"].error.iloc[0].startswith("RuntimeError: encoder exploded")
    assert result.statuses["gpcc"].startswith("not available") and "tmc3" in result.statuses["gpcc"]
    assert len(result.per_shape) == 4
    out = write_results(result, tmp_path / "res")
    for name in ("summary.csv", "per_shape.csv", "results.json", "rd_cd.html", "rd_f1.html"):
        assert (out / name).is_file()
    assert json.loads((out / "results.json").read_text())["statuses"]["draco"] == "ok"
    store = RunStore(tmp_path / "store")
    run = store.create(result, {"x": 1})
    summary, per_shape = store.load(run)
    assert list(summary.codec) == list(s.codec) and len(per_shape) == 4
    assert store.runs("custom").id.tolist() == [run]
    fig = rd_figure(summary, "f1_005", highlight="draco", earlier=[summary])
    assert any(t.name == "draco" for t in fig.data)


def three_tori() -> LoadedSet:
    meshes = [
        Mesh(*(lambda t: (t.vertices, t.faces))(trimesh.creation.torus(1 + 0.2 * i, 0.3)), f"t{i}") for i in range(3)
    ]
    return LoadedSet(meshes, [], [], [50_000] * 3)


@pytest.fixture
def half_empty_codec():
    @register_codec
    class HalfEmpty(Codec):
        """Decodes the three tori of :func:`three_tori`, the last one to nothing."""

        name, label, knob = "half-empty", "HalfEmpty", "x"

        def sweep(self):
            return [{"x": 1}]

        def encode(self, meshes, setting, progress=None, cancel=None):
            return [b"x" * 100 for _ in meshes]

        def decode(self, blobs, setting, progress=None, cancel=None):
            meshes = three_tori().meshes
            return meshes[:2] + [Mesh(meshes[2].vertices[:0], meshes[2].faces[:0], "t2")]

    yield "half-empty"
    _REGISTRY.pop("half-empty")


def test_summary_counts_empty_decodes_and_keeps_a_median(half_empty_codec):
    s = evaluate(three_tori(), ["half-empty"], n_samples=2000).summary
    row = s[s.codec == "half-empty"].iloc[0]
    assert row.cd == float("inf") and row.empty_shapes == 1
    assert 0 < row.cd_median < 0.05  # the two exact shapes carry the median
    floor = s[s.codec == "floor"].iloc[0]
    assert floor.empty_shapes == 0 and 0 < floor.cd_median < 0.05


def test_rd_figure_draws_the_median_when_some_shapes_are_empty(half_empty_codec):
    summary = evaluate(three_tori(), ["half-empty"], n_samples=2000).summary
    fig = rd_figure(summary, "cd")
    (trace,) = [t for t in fig.data if t.name == "half-empty"]
    assert float(trace.y[0]) == summary.cd_median.iloc[1] and "1 shapes empty" in trace.text[0]


def test_the_run_store_keeps_settings_results_and_files_under_one_id(tmp_path):
    import pandas as pd

    from necgs.evaluation.runner import EvaluationResult
    from necgs.evaluation.runs import FittedVariant, run_record

    store = RunStore(tmp_path / "store")
    meshes = tiny_set().meshes
    rows = pd.DataFrame(
        [{"codec": "floor", "label": "f", "status": "ok"}, {"codec": "necgs", "label": "a", "status": "pending"}]
    )
    partial = EvaluationResult("cad", rows, pd.DataFrame(), meshes=meshes)
    config = run_record("cad", ["necgs", "draco"], [{"width": "tiny"}], 2, limit=2)
    run = store.create(partial, config, status="partial")
    assert store.runs().set_index("id").status[run] == "partial" and store.config(run)["necgs"] == [{"width": "tiny"}]
    done = EvaluationResult("cad", rows.assign(status="ok"), pd.DataFrame(), meshes=meshes)
    done.decoded[("necgs", "a")] = meshes
    done.blobs[("necgs", "a")] = [b"\x89NCGS archive"]
    volumes = FittedVariant([np.zeros((4, 8, 8, 8))] * 2, meshes)
    store.save_results(run, done)
    store.save_files(run, done, {"a": volumes})
    assert store.runs().set_index("id").status[run] == "done" and set(store.load(run)[0].status) == {"ok"}
    assert store.index(run)["shapes"] == ["t0", "t1"] and store.latest("cad") == run
    assert store.archive_file(run, "necgs::a").read_bytes() == b"\x89NCGS archive"
    assert [p.name for p in store.decoded_files(run, "necgs::a")] == ["t0.ply", "t1.ply"]
    assert store.mesh_file(run, "fitted", "necgs::a", "t1") and store.mesh_file(run, "original", None, "t0")
    assert np.load(store.volume_file(run, "necgs::a", "t0")).shape == (4, 8, 8, 8)
    assert store.mesh_file(run, "decoded", "draco::q8", "t0") is None
    store.discard(run)
    assert not store.exists(run) and not store.folder(run).exists() and store.latest() is None


def test_a_partial_run_whose_process_died_is_discarded_but_a_live_one_is_kept(tmp_path):
    """A server stopped mid-job leaves a run's first part stored as "partial": it must not be shown later."""
    import sqlite3
    import subprocess

    import pandas as pd

    from necgs.evaluation.runner import EvaluationResult

    store = RunStore(tmp_path / "store")
    rows = pd.DataFrame([{"codec": "necgs", "label": "a", "status": "pending"}])
    part = EvaluationResult("cad", rows, pd.DataFrame())
    live, dead, done = (store.create(part, {}, status=s) for s in ("partial", "partial", "done"))
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer runs
    with sqlite3.connect(store.db_path) as db:
        db.execute("UPDATE runs SET pid = ? WHERE id = ?", (gone.pid, dead))
    assert store.discard_orphaned() == [dead]
    assert store.exists(live) and store.exists(done) and not store.exists(dead)
