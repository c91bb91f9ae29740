"""The page's defaults, tables and texts: the decoder advice, the metrics' sample count, the tables'
headers, the teaching view's slice, and a tab that closes while its viewer files are written."""

import numpy as np
import pandas as pd
import pytest

from necgs.config import PRESETS
from necgs.io.mesh import Mesh
from necgs.metrics import compare_meshes, mean_metrics, sampling_floor
from necgs.webapp import (
    advice,
    control_handlers,
    decoders,
    glossary,
    panels,
    running,
    sessions,
    tables,
    teaching,
    views,
)
from necgs.webapp.first_launch import initial_variants

PRIORS = [
    {"name": "bodies", "trained_on": ["humans_ama/crane", "animals_sumner"]},
    {"name": "general", "trained_on": ["humans_ama/crane", "animals_sumner", "cad_thingi10k"]},
]


def test_a_few_shapes_start_from_a_prior_and_the_line_says_why():
    few = advice.pays_off_from("tiny") - 1
    on_bodies = advice.advise(few, "humans_ama", PRIORS)
    assert on_bodies.choice == "prior: bodies" and on_bodies.width == "tiny"
    assert f"{few} shapes" in on_bodies.reason and f"pays off from about {few + 1} shapes" in on_bodies.reason
    assert "prior 'bodies'" in on_bodies.reason and "\n" not in on_bodies.reason
    assert advice.advise(6, "figures", PRIORS).choice == "prior: general"  # no prior trained on it: the widest
    alone = advice.advise(6, "figures", [])
    assert alone.choice == decoders.TRAIN_DECODER and "no prior is installed" in alone.reason


def test_many_shapes_get_a_trained_decoder_of_the_width_that_pays_off():
    sizes = [advice.decoder_bytes(w) for w in advice.PAGE_WIDTHS]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    for width in advice.PAGE_WIDTHS:
        n = advice.pays_off_from(width)
        assert advice.decoder_bytes(width) / n <= advice.DECODER_BYTES_PER_SHAPE
        assert advice.decoder_bytes(width) / (n - 1) > advice.DECODER_BYTES_PER_SHAPE
    n = advice.pays_off_from("small")
    many = advice.advise(n, "humans_ama", PRIORS)
    assert many.choice == decoders.TRAIN_DECODER and many.width == "small"
    medium = advice.pays_off_from("medium")
    assert "width small" in many.reason and f"medium pays off from about {medium}" in many.reason
    assert advice.suggested_width(n - 1) == "tiny" and advice.suggested_width(10_000) == "large"
    widths = [advice.PAGE_WIDTHS.index(advice.suggested_width(k)) for k in range(1, 400, 7)]
    assert widths == sorted(widths)


def test_the_advice_moves_the_controls_only_where_they_hold_the_last_advice(monkeypatch):
    monkeypatch.setattr(decoders, "installed_priors", lambda: PRIORS)
    first = advice.advise(6, "humans_ama", PRIORS)
    start = (first.choice, first.width)
    decoder, width, line, advised = control_handlers.on_advice("humans_ama", None, 200, *start, start)
    assert decoder["value"] == decoders.TRAIN_DECODER and width["value"] == advice.suggested_width(88)
    assert "88 shapes" in line and advised == (decoders.TRAIN_DECODER, advice.suggested_width(88))
    mine = control_handlers.on_advice("humans_ama", None, 200, "both: train a decoder + prior general", "large", start)
    assert mine[0]["value"] == "both: train a decoder + prior general" and mine[1]["value"] == "large"
    gone = control_handlers.on_advice("humans_ama", None, 6, "prior: retired", "tiny", start)
    assert gone[0]["value"] == "prior: bodies"  # a prior no longer installed is replaced
    assert control_handlers.shapes_of("figures", None, 64) == 24  # the set has 24
    assert control_handlers.shapes_of("figures", ["a.obj", "b.obj"], 6) == 2
    assert control_handlers.shapes_of("figures", ["set.zip"], 6) == 6


def test_the_epochs_box_follows_the_preset():
    for name in ("quick", "standard"):
        assert control_handlers.on_preset(name)["value"] == PRESETS[name].train.epochs


def test_the_preset_caption_says_which_preset_ties_its_decoder():
    assert panels._preset_caption("standard") == "standard: K=64, 600 epochs, tied decoder"
    assert panels._preset_caption("quick") == "quick: K=64, 200 epochs"


def test_the_metrics_use_the_benchmarks_samples_so_the_floor_reads_alike(shared_data):
    assert running.METRIC_SAMPLES == 100_000
    import inspect

    assert inspect.signature(compare_meshes).parameters["n_samples"].default == running.METRIC_SAMPLES
    import trimesh as tm

    files = sorted((shared_data / "humans_ama" / "crane").glob("*.ply"))[:2]
    bodies = [Mesh(t.vertices, t.faces) for t in (tm.load(f, process=False) for f in files)]
    floor = mean_metrics([sampling_floor(m, running.METRIC_SAMPLES) for m in bodies])
    # the shipped 88-AMA benchmark's floor: CD 2.60e-3, F1 0.945; at 2e4 samples: 6.1e-3, 0.41
    assert floor.cd < 3.2e-3 and floor.f1_005 > 0.88


def _summary() -> pd.DataFrame:
    rows = [
        ("floor", "metric floor", "ok", 100_000, 1.0, 0.0026, 0.94, 0.99),
        ("necgs", "prior bodies", "ok", 2_345, 123.456789, 0.0061234, 0.5412345, 0.9123456),
        ("draco", "q9", "ok", 50_123, 27.1234, 0.0061, 0.6, 0.95),
    ]
    frame = pd.DataFrame(rows, columns=["codec", "label", "status", "bytes", "ratio_ply", "cd", "f1_005", "nc"])
    return frame.assign(
        error="", bits_per_vertex=1.2345, f1_01=0.9, cd_median=frame.cd, empty_shapes=0, encode_s=1.23456, n_shapes=2
    ).assign(decode_ms_per_shape=[0.0, 345.6, 2.0])


def test_the_tables_have_readable_headers_and_rounded_numbers():
    table = tables.metrics_table(_summary())
    shown = ["codec", "setting", "ratio vs PLY", "kB", "CD x1e-3", "F1", "NC", "encode s/shape", "decode s/shape"]
    assert list(table.columns) == shown
    row = table[table.setting == "prior bodies"].iloc[0]
    assert (row["ratio vs PLY"], row["kB"], row["CD x1e-3"], row["F1"]) == (123.5, 2.3, 6.12, 0.541)
    assert (row["encode s/shape"], row["decode s/shape"]) == (0.62, 0.35)
    failed = _summary().assign(status=["ok", "error", "ok"], error=["", "boom", ""], empty_shapes=[0, 2, 0])
    wide = tables.metrics_table(failed)
    assert {"status", "error", "empty shapes", "CD median x1e-3"} <= set(wide.columns)
    per_shape = pd.DataFrame(
        [["humans_ama", "necgs", "prior bodies", "a", 0.0061234, 0.91, 0.54, 0.9, 0.0026, 0.0059, 0.55]],
        columns=[
            *("dataset", "codec", "label", "shape", "cd", "nc", "f1_005", "f1_01"),
            *("floor_cd", "cd_fitted", "f1_fitted"),
        ],
    )
    shown = tables.per_shape_table(per_shape)
    assert list(shown.columns) == [
        "codec",
        "setting",
        "shape",
        "CD x1e-3",
        "F1",
        "NC",
        "F1 at 0.01",
        "CD fitted x1e-3",
        "F1 fitted",
        "floor CD x1e-3",
    ]
    assert shown["CD x1e-3"].iloc[0] == 6.12 and tables.per_shape_table(pd.DataFrame()).empty


def test_the_glossary_explains_every_term_and_no_text_makes_an_email_link():
    for term in glossary.TERMS:
        assert f"**{term}**" in glossary.GLOSSARY
    texts = [glossary.HEADER, glossary.ABOUT, glossary.GLOSSARY, *(name for name, _ in tables.TABLE_COLUMNS.values())]
    texts += [name for name, _ in tables.PER_SHAPE_COLUMNS.values()]
    assert not any("@" in t for t in texts)  # Markdown turns "F1@0.005" into a mailto: link


def test_the_teaching_slice_starts_where_the_shape_is_widest():
    K = 32
    x, y, z = np.meshgrid(*[np.arange(K)] * 3, indexing="ij")
    volume = np.zeros((4, K, K, K), np.float32)  # a double cone, widest at z = 22
    volume[0] = np.clip(np.hypot(x - 16, y - 12) - (8 - np.abs(z - 22)), -1, 1)
    assert teaching.best_slice(volume) == 22
    assert teaching.best_slice(np.ones((4, K, K, K), np.float32)) == K // 2  # nothing inside: the middle


def test_a_tab_closing_while_its_viewer_files_are_written_is_quiet(monkeypatch):
    box = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float), np.array([[0, 1, 2]]), "s")
    monkeypatch.setattr(views, "load_run_mesh", lambda *a: box)

    def closing_write(mesh, path):
        sessions.end_session("closing-viewer")  # the tab closes now: its folder goes
        raise FileNotFoundError(path)

    monkeypatch.setattr(views, "plain_glb", closing_write)
    files = views.viewer_files(7, "s", ["necgs::x", "draco::q9"], "closing-viewer")
    assert files.original is None and files.coloured == [None, None] and sessions.closed("closing-viewer")
    monkeypatch.setattr(views, "plain_glb", lambda mesh, path: (_ for _ in ()).throw(FileNotFoundError(path)))
    with pytest.raises(FileNotFoundError):  # a session still open: a real error
        views.viewer_files(7, "s", ["necgs::x"], "open")
    sessions.end_session("open")


def test_the_first_launch_run_shows_the_advised_prior_beside_a_trained_decoder(monkeypatch):
    monkeypatch.setattr(decoders, "installed_priors", lambda: PRIORS)
    monkeypatch.setattr(decoders, "prior_setting", lambda name: {"prior": name, "prior_id": "x"})
    import necgs.webapp.first_launch as first_launch

    monkeypatch.setattr(first_launch, "installed_priors", lambda: PRIORS)
    trained, prior = initial_variants()
    assert trained["width"] == "tiny" and prior == {"prior": "general", "prior_id": "x"}
    monkeypatch.setattr(first_launch, "installed_priors", lambda: [])
    assert [v.get("prior") for v in initial_variants()] == [None]


def test_gpcc_without_tmc3_is_a_plain_note(monkeypatch):
    from necgs.baselines import mpeg
    from necgs.webapp.choices import unavailable_notes
    from necgs.webapp.panels import codec_availability

    monkeypatch.setattr(mpeg, "TOOL_DIRS", ())
    monkeypatch.setenv("PATH", "/nonexistent")
    (note,) = unavailable_notes(["draco", "gpcc"])
    assert note.startswith("gpcc was not run: tmc3 not installed") and "build_tmc3.sh" in note
    offered, unavailable = codec_availability()
    assert "gpcc" not in offered and "**gpcc**: tmc3 not installed" in unavailable and "Error" not in unavailable
