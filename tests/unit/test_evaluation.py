"""The RD runner, its outputs and the results store."""

import json

import pytest
import trimesh

from necgs.baselines.base import Codec, _REGISTRY, register_codec
from necgs.evaluation import ResultsStore, evaluate, rd_figure, write_results
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

        def encode(self, meshes, setting, progress=None):
            raise RuntimeError("encoder exploded")

        def decode(self, blobs, setting, progress=None):
            return []

    yield "broken"
    _REGISTRY.pop("broken")


def test_runner_rows_outputs_and_store(tmp_path, broken_codec, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    result = evaluate(tiny_set(), ["draco", "broken", "gpcc"], settings={"draco": [{"bits": 12}, {"bits": 7}]},
                      n_samples=3000)
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
    store = ResultsStore(tmp_path / "r.sqlite")
    run = store.add_run(result, {"x": 1})
    summary, per_shape = store.load_run(run)
    assert list(summary.codec) == list(s.codec) and len(per_shape) == 4
    assert store.list_runs("custom").id.tolist() == [run]
    fig = rd_figure(summary, "f1_005", highlight="draco", earlier=[summary])
    assert any(t.name == "draco" for t in fig.data)
