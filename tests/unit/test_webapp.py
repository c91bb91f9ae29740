"""App parts called directly on tiny data; importing and building the page does no work."""

import json
import time
import zipfile

import numpy as np
import pandas as pd
import pytest

from necgs.errors import NecgsError
from necgs.evaluation.figures import VARIANT_COLORS, rd_figure
from necgs.evaluation.runner import StageEvent
from necgs.evaluation.runs import RunStore
from necgs.webapp import build_demo, choices, decoders, messages, running, sessions, teaching, uploads, views
from necgs.webapp.progress import JobProgress


def test_build_demo_has_no_side_effects():
    before = len(RunStore().runs())
    demo = build_demo()
    assert demo is not None and len(RunStore().runs()) == before


def test_upload_staging_confines_zips_and_skips_non_meshes(tmp_path, shared_data):
    good = shared_data / "cad_trimesh" / "featuretype.STL"
    zpath = tmp_path / "up.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(good, "parts/featuretype.stl")
        zf.writestr("notes.txt", "hello")
    folder, notes = uploads.stage_upload([str(zpath), str(good)], tmp_path / "session")
    assert (folder / "featuretype.STL").is_file() and (folder / "up" / "parts" / "featuretype.stl").is_file()
    assert any("notes.txt" in n for n in notes)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape.obj", "v 0 0 0\n")
    with pytest.raises(NecgsError, match="outside"):
        uploads.stage_upload([str(evil)], tmp_path / "session2")
    assert not (tmp_path / "escape.obj").exists()
    with pytest.raises(NecgsError, match="no files"):
        uploads.stage_upload([], tmp_path / "s3")


def test_a_bad_upload_names_the_file_and_the_reason_without_server_paths(tmp_path):
    bad = tmp_path / "incoming" / "broken_part.obj"
    bad.parent.mkdir()
    bad.write_text("this is not a mesh\n")
    with pytest.raises(uploads.UploadError) as info:
        uploads.load_upload([str(bad)], tmp_path / "session")
    assert info.value.title == "no usable mesh in the upload"
    (detail,) = info.value.details
    assert detail.startswith("skipped broken_part.obj: ") and len(detail) > len("skipped broken_part.obj: ")
    assert str(tmp_path) not in str(info.value)
    assert messages.scrub_paths("/tmp/gradio/abc123/x.obj: no faces") == "x.obj: no faces"


def test_ablation_variants_keep_the_reference_first_and_refuse_a_single_value():
    base = choices.necgs_settings("tiny", "quick", True, True, False, 20)
    variants = choices.ablation_variants("bits (weights and features)", ["8 bits", "6 bits"], base)
    assert [(v["weight_bits"], v["feature_bits"]) for v in variants] == [(6, 6), (8, 8)]
    labels = [views.variant_label(v) for v in variants]
    assert len(set(labels)) == 2
    with pytest.raises(NecgsError, match="at least two"):
        choices.ablation_variants("SSIM term", ["with SSIM"], base)
    with pytest.raises(NecgsError, match="unknown ablation factor"):
        choices.ablation_variants("colour", ["a", "b"], base)
    rate = choices.ablation_variants("rate term lambda_R", ["lambda_R 1", "lambda_R 0", "lambda_R 3"], base)
    assert [v["lambda_rate"] for v in rate] == [0.0, 1.0, 3.0]
    assert len({views.variant_label(v) for v in rate}) == 3


def test_progress_is_monotone_and_weighted_by_stage_cost():
    reports = []
    setting = {"preset": "quick", "width": "tiny", "epochs": 100}
    tracker = JobProgress.for_run(
        ["necgs", "draco"], {"necgs": [setting], "draco": [{"bits": 8}]}, 4, lambda f, t: reports.append((f, t))
    )
    for stage, phase in (("fit", "encode"), ("train", "encode"), ("code", "encode"), ("decode", "decode")):
        for frac in (0.0, 0.5, 1.0):  # every stage restarts at 0: the bar must not
            tracker.on_stage(StageEvent(0, "necgs", "quick tiny", phase, stage, frac))
    train_share = [f for f, t in reports if "train" in t]
    tracker.on_stage(StageEvent(1, "draco", "q8", "encode", "encode", 0.5))
    tracker.finishing(1.0, "saved")
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert train_share[-1] - train_share[0] > 0.5  # training dominates a NeCGS run


def test_sessions_are_removed_on_close_and_when_stale():
    folder = sessions.session_dir("closing")
    (folder / "f.txt").write_text("x")
    sessions.end_session("closing")
    assert not folder.exists() and "closing" not in sessions.active_sessions()
    quiet = sessions.session_dir("quiet")
    busy = sessions.session_dir("busy")
    time.sleep(0.3)
    sessions.touch("busy")
    assert sessions.sweep_stale(max_idle_s=0.2) == ["quiet"]
    assert not quiet.exists() and busy.exists()
    sessions.end_session("busy")


def test_late_work_of_a_closed_session_makes_no_folder_but_the_page_revives_it(monkeypatch):
    """A job still running when its tab closes must not recreate the folder the unload removed."""
    from necgs.io.mesh import Mesh
    from necgs.webapp import live

    folder = sessions.session_dir("late")
    feed = live.start_feed("late", folder)
    sessions.end_session("late")
    with pytest.raises(sessions.SessionClosed, match="has closed"):
        sessions.session_dir("late")
    tet = Mesh(np.eye(4)[:, :3], np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]), "tet")
    assert feed.show(tet, tet, "epoch 9").glb is None  # the live decode of a closed tab writes nothing
    monkeypatch.setattr(views, "load_run_mesh", lambda *a: tet)
    assert views.viewer_files(7, "tet", ["necgs::x"], "late").coloured == [None]
    assert not folder.exists() and sessions.closed("late") and "late" not in sessions.active_sessions()
    sessions.touch("late")  # the tab is there after all (a request of the page): a new folder
    assert sessions.session_dir("late").is_dir() and not sessions.closed("late")
    sessions.end_session("late")


def _summary(rows):
    cols = ["codec", "label", "status", "bytes", "ratio_ply", "cd", "f1_005", "cd_median", "empty_shapes"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows])


def test_the_shipped_benchmark_draws_one_line_per_preset():
    summary = views.shipped_view().summary
    nec = summary[summary.codec == "necgs"]
    assert set(nec.series) == {"necgs quick", "necgs standard"}
    standard = nec[nec.series == "necgs standard"]
    assert standard.setting.map(lambda s: json.loads(s).get("tied_modules")).eq(4).all()  # as the preset is now
    fig = rd_figure(summary, "cd")
    assert {t.name for t in fig.data} >= {"necgs quick", "necgs standard", "decimate-draco"}


def test_variants_get_stable_named_colours_deltas_and_a_matched_peer():
    summary = _summary(
        [
            ("floor", "metric floor", "ok", 1000, 1.0, 0.002, 0.9, 0.002, 0),
            ("necgs", "quick tiny", "ok", 100, 10.0, 0.010, 0.5, 0.010, 0),
            ("necgs", "quick tiny (no ssim)", "ok", 90, 11.0, 0.015, 0.4, 0.015, 0),
            ("draco", "q8", "ok", 500, 2.0, 0.003, 0.8, 0.003, 0),
            ("draco", "q6", "ok", 120, 8.0, 0.006, 0.6, 0.006, 0),
        ]
    )
    drawn = views.with_series(summary, per_setting=True)
    figs = [rd_figure(drawn, m, overlays=[("run 3", drawn)]) for m in ("cd", "f1_005")]
    colours = [{t.name: t.marker.color for t in f.data} for f in figs]
    assert colours[0] == colours[1]
    assert colours[0]["necgs quick tiny"] != colours[0]["necgs quick tiny (no ssim)"]
    assert "necgs quick tiny (no ssim) (run 3)" in colours[0] and not any("earlier" in n for n in colours[0])
    table = views.metrics_table(summary)
    no_ssim = table[table.setting == "quick tiny (no ssim)"].iloc[0]
    assert no_ssim["dCD vs ref x1e-3"] == pytest.approx(5.0) and no_ssim["dF1 vs ref"] == pytest.approx(-0.1)
    assert views.matched_peer(summary, "necgs::quick tiny") == "draco::q6"
    assert "10x, CD 10.00e-3, F1 0.500" in views.viewer_title(summary, "necgs::quick tiny", "NeCGS")


@pytest.fixture(scope="module")
def run():
    setting = choices.necgs_settings("tiny", "quick", True, True, False, 30)
    return running.execute_run("cad", ["necgs", "draco"], [setting], limit=2, n_samples=3000)


def test_a_tiny_run_fills_every_view(run):
    view = views.build_run_view(run)
    assert set(view.table.codec) == {"floor", "necgs", "draco"} and "CD fitted x1e-3" in view.table
    assert view.shapes == ["cad_000", "cad_001"] and view.necgs_keys == ["necgs::quick tiny"]
    assert view.label.startswith(f"run {run}: cad x2, necgs quick tiny")
    assert views.runs_table([None]).iloc[0][["id", "width", "epochs", "SSIM"]].tolist() == [run, "tiny", "30", "on"]
    peer = views.matched_peer(view.summary, view.necgs_keys[0])
    files = views.viewer_files(run, "cad_000", [view.necgs_keys[0], peer], "t")
    for path in (files.original, *files.coloured):
        assert path and open(path, "rb").read(4) == b"glTF"
    assert "distance" in files.legend
    archive, decoded, csv = views.downloads(run, view.necgs_keys[0], view.summary, "t")
    root = sessions.session_dir("t")
    assert all(str(p).startswith(str(root)) for p in (archive, decoded, csv))
    assert open(archive, "rb").read(5) == b"\x89NCGS"
    assert zipfile.ZipFile(decoded).namelist() == ["cad_000.ply", "cad_001.ply"]
    assert pd.read_csv(csv).codec.tolist()[:2] == ["floor", "necgs"]
    sessions.end_session("t")
    assert not root.exists()


def test_a_stale_picker_value_shows_nothing_and_raises_no_error(run):
    """A viewer refresh queued behind a run's end may carry the shape of the run shown before."""
    from necgs.webapp import viewer_handlers

    demo = build_demo()
    shape = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "shape")
    assert shape.preprocess("cad_000") == "cad_000"  # no "not in the list of choices" error toast
    out = viewer_handlers.on_view(run, "gone_shape", "necgs::quick tiny", None, None)
    assert out[0]["value"] is None and out[1]["value"] is None
    teach = viewer_handlers.on_teach(run, "gone_shape", "necgs::quick tiny", None, None)
    assert "no fitted volume of gone_shape" in teach[-1]


def test_a_benchmark_run_stored_in_the_old_schema_gets_a_clean_label():
    """Benchmark runs once stored their script arguments ("codecs": "necgs,draco", no shape count)."""
    from necgs.evaluation.runner import EvaluationResult

    old = {"benchmark": "rd_x", "dataset": "humans_ama", "shapes": None, "codecs": "necgs,decimate-draco"}
    empty = EvaluationResult("humans_ama", pd.DataFrame(), pd.DataFrame())
    run = RunStore().create(empty, old)
    assert views.run_label(run) == f"run {run}: humans_ama xall, necgs - [benchmark rd_x]; decimate-draco"


def test_the_teaching_view_separates_representation_and_coding(run):
    fitted, decoded = teaching.teaching_volumes(run, "necgs::quick tiny", "cad_000")
    assert fitted.shape == decoded.shape == (4, 64, 64, 64) and not np.allclose(fitted, decoded)
    fig = teaching.slice_figure(fitted, decoded, 16)
    assert np.allclose(np.asarray(fig.data[2].z), (decoded[0, :, :, 16] - fitted[0, :, :, 16]).T)
    per_shape = RunStore().load(run)[1]
    text = teaching.cd_breakdown(per_shape, "necgs::quick tiny", "cad_000")
    row = per_shape[(per_shape.codec == "necgs") & (per_shape["shape"] == "cad_000")].iloc[0]
    assert f"{1e3 * row.cd_fitted:.2f}" in text and f"{1e3 * row.cd:.2f}" in text
    assert 0 < row.cd_fitted < 0.05


def test_reviewer_figure_renders_offscreen_with_titles_and_colour_bar(run):
    from PIL import Image

    png = views.reviewer_figure(run, "cad_000", "necgs::quick tiny", "fig", vmax=0.05)
    image = np.asarray(Image.open(png).convert("RGB"))
    assert open(png, "rb").read(4) == b"\x89PNG"
    from necgs.visualize import colormap

    top = colormap(np.array([1.0]))[0, :3]  # the bar's right end is the ramp's top colour, as on the page
    assert (np.abs(image.astype(int) - top).sum(axis=2) < 10).sum() > 50
    sessions.end_session("fig")


# ---------------------------------------------------------------------------- priors in the app
def only_priors_in(monkeypatch, *folders) -> None:
    """The installed priors are those of ``folders`` (not the shipped ones, not the user's cache)."""
    import os

    from necgs.priors import installed

    monkeypatch.setattr(installed, "SHIPPED_DIR", installed.SHIPPED_DIR / "not-here")
    monkeypatch.setenv("NECGS_PRIOR_DIRS", os.pathsep.join(map(str, folders)))


def test_decoder_choices_round_trip_and_with_no_prior_only_training(monkeypatch, tmp_path):
    only_priors_in(monkeypatch, tmp_path / "none")
    assert decoders.installed_priors() == [] and decoders.decoder_choices() == [decoders.TRAIN_DECODER]
    assert "No prior is installed" in decoders.decoder_note()
    choices = decoders.decoder_choices([{"name": "bodies"}, {"name": "cad"}])
    assert choices == [
        decoders.TRAIN_DECODER,
        "prior: bodies",
        "both: train a decoder + prior bodies",
        "prior, and prior + fine-tuned delta: bodies",
        "prior: cad",
        "both: train a decoder + prior cad",
        "prior, and prior + fine-tuned delta: cad",
    ]
    assert [decoders.parse_decoder(c) for c in choices[:4]] == [
        (True, None, False),
        (False, "bodies", False),
        (True, "bodies", False),
        (False, "bodies", True),
    ]
    trained = {"preset": "quick", "width": "tiny"}
    tuned = {"prior": "bodies", "fine_tune": decoders.FINE_TUNE_STEPS}
    for choice, settings in (
        (decoders.TRAIN_DECODER, [trained]),
        ("prior: bodies", [{"prior": "bodies"}]),
        ("both: train a decoder + prior bodies", [trained, {"prior": "bodies"}]),
        ("prior, and prior + fine-tuned delta: bodies", [{"prior": "bodies"}, tuned]),
    ):
        assert decoders.decoder_choice(settings) == choice
    with pytest.raises(NecgsError, match="unknown decoder choice"):
        decoders.parse_decoder("prior:")
    assert views.decoder_text([trained, {"prior": "bodies"}]) == "trained + prior bodies"
    assert views.decoder_text([{"prior": "bodies"}, tuned]) == "prior bodies + prior bodies fine-tuned"


def test_a_missing_or_broken_prior_is_one_clear_line(monkeypatch, tiny_prior_dir, tmp_path):
    from necgs.priors.ncgp import read_prior, write_prior

    only_priors_in(monkeypatch, tiny_prior_dir)
    setting = decoders.prior_setting("tiny")
    assert setting == {"prior": "tiny", "prior_id": read_prior(tiny_prior_dir / "tiny.ncgp").id}
    with pytest.raises(NecgsError, match="'ghost' is not installed any more .installed: tiny."):
        decoders.decoder_variants("prior: ghost", [{}])
    broken = tmp_path / "broken"
    broken.mkdir()
    prior = read_prior(tiny_prior_dir / "tiny.ncgp")
    prior.name = "damaged"
    path = broken / "damaged.ncgp"
    write_prior(path, prior)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # a section's bytes no longer match its CRC; the header still lists it
    path.write_bytes(bytes(data))
    only_priors_in(monkeypatch, tiny_prior_dir, broken)
    assert "prior: damaged" in decoders.decoder_choices()
    with pytest.raises(NecgsError, match="prior 'damaged' cannot be read") as info:
        decoders.prior_setting("damaged")
    assert str(tmp_path) not in str(info.value)
    from necgs.webapp import handlers

    out = list(handlers._job(None, handlers._run_work("cad", None, 2, [], "prior: damaged", [{}], None)))
    *_, step = out  # a job may first say that it got the worker
    assert step[0] == {"__type__": "update"}  # an input error keeps what the page showed
    assert "role='alert'" in step[10] and "prior &#x27;damaged&#x27; cannot be read" in step[10]


def test_progress_weighs_a_prior_as_seconds_beside_training(monkeypatch, tiny_prior_dir):
    from necgs.webapp.progress import necgs_weights

    only_priors_in(monkeypatch, tiny_prior_dir)
    prior = sum(necgs_weights({"prior": "tiny"}, 6).values())
    trained = sum(necgs_weights({"preset": "quick", "width": "tiny", "epochs": 150}, 6).values())
    assert 5 < prior < trained / 5


def test_a_prior_variant_is_stored_first_then_the_run_completes(monkeypatch, tiny_prior_dir):
    only_priors_in(monkeypatch, tiny_prior_dir)
    variants = decoders.decoder_variants("prior: tiny", [])
    stages = running.run_stages("cad", ["necgs", "draco"], variants, 2, 2000)
    first = next(stages)
    assert not first.final and first.ready == ("prior tiny",) and {c for c, _ in first.pending} == {"draco"}
    assert RunStore().runs().set_index("id").status[first.run] == "partial"
    view = views.build_run_view(first.run)
    assert view.necgs_keys == ["necgs::prior tiny"] and view.peer_keys == []
    assert set(view.table.status) == {"ok", "pending"} and "necgs prior tiny" in view.label
    assert [t.name for t in view.figures[0].data] == ["necgs prior tiny"]
    (final,) = list(stages)
    assert final.final and final.run == first.run
    assert RunStore().runs().set_index("id").status[first.run] == "done"
    view = views.build_run_view(final.run)
    assert "status" not in view.table and view.peer_keys and view.necgs_keys == ["necgs::prior tiny"]  # all ok
    row = view.summary[view.summary.codec == "necgs"].iloc[0]
    assert 0 < row.cd_fitted < 0.1 and row.bytes < 5000  # features only: the decoder is the prior's
    fitted, decoded = teaching.teaching_volumes(final.run, "necgs::prior tiny", "cad_000")
    assert fitted.shape == decoded.shape == (4, 16, 16, 16)
    assert views.runs_table([None]).set_index("id").loc[final.run, "decoder"] == "prior tiny"
    from necgs.webapp import handlers

    restored = handlers.on_restore(final.run)  # a prior only: the training switches stay as they are
    assert len(restored) == 13 and restored[9]["value"] == "prior: tiny"
    assert all("value" not in u for u in restored[2:8]) and restored[8]["value"] == ["draco"]


def test_a_job_cancelled_after_its_prior_part_leaves_nothing(monkeypatch, tiny_prior_dir):
    import threading

    from necgs.errors import Cancelled

    only_priors_in(monkeypatch, tiny_prior_dir)
    cancel = threading.Event()
    variants = decoders.decoder_variants(
        "both: train a decoder + prior tiny", [choices.necgs_settings("tiny", "quick", True, True, False, 5)]
    )
    assert [views.variant_label(v) for v in variants] == ["quick tiny", "prior tiny"]
    stages = running.run_stages("cad", ["necgs"], variants, 2, 2000, cancel=cancel)
    first = next(stages)
    view = views.build_run_view(first.run)
    assert view.table.status.tolist() == ["ok", "pending", "ok"]  # floor, then the variants in the order chosen
    colours = {t.name: t.marker.color for t in view.figures[0].data}
    cancel.set()
    with pytest.raises(Cancelled):
        next(stages)
    assert not RunStore().exists(first.run) and not RunStore().folder(first.run).joinpath("index.json").exists()
    assert colours == {"necgs prior tiny": VARIANT_COLORS[1]}  # the colour it keeps beside the trained decoder


def test_restoring_a_run_with_a_prior_that_is_gone_names_it(monkeypatch, tmp_path):
    from necgs.webapp import handlers

    only_priors_in(monkeypatch, tmp_path)
    update = handlers.restored_decoder(7, [{"prior": "bodies"}])
    assert "value" not in update and "prior 'bodies', which is not installed here" in update["info"]
    from necgs.webapp.control_handlers import on_advice

    assert on_advice("figures", None, 6, "prior: bodies", "tiny", None)[0]["value"] == decoders.TRAIN_DECODER


def test_labels_name_the_ssim_term_only_where_it_departs_from_the_preset(monkeypatch):
    from dataclasses import replace

    from necgs.config import PRESETS

    quick = choices.necgs_settings("tiny", "quick", True, True, False, None)
    assert views.variant_label(quick) == "quick tiny"
    assert views.variant_label({**quick, "ssim": False}) == "quick tiny (no ssim)"
    assert views.variant_label({**quick, "deform": False, "ssim": False}) == "quick tiny (no ssim, no deform)"
    monkeypatch.setitem(
        PRESETS, "quick", replace(PRESETS["quick"], train=replace(PRESETS["quick"].train, use_ssim=False))
    )
    assert views.variant_label(quick) == "quick tiny (ssim)"  # named where it departs from the preset
    assert views.variant_label({**quick, "ssim": False}) == "quick tiny"


def test_the_rate_curve_factor_is_one_series_with_as_many_points_as_the_peer():
    from necgs.baselines.base import get_codec
    from necgs.webapp import handlers

    names = list(choices.ABLATIONS[choices.RATE_CURVE])
    assert handlers.on_factor(choices.RATE_CURVE)["value"] == names  # every point picked
    assert handlers.on_factor("SSIM term")["value"] == list(choices.ABLATIONS["SSIM term"])[:2]
    base = choices.necgs_settings("tiny", "quick", True, True, False, 20)
    variants = choices.ablation_variants(choices.RATE_CURVE, names, base)
    assert len(variants) == len(get_codec("decimate-draco").sweep())
    labels = [views.variant_label(v) for v in variants]
    assert len(set(labels)) == len(labels)
    rows = [("necgs", label, json.dumps(v)) for label, v in zip(labels, variants)]
    rows += [("necgs", "quick small", json.dumps(base)), ("draco", "q11", "{}"), ("draco", "q8", "{}")]
    summary = views.with_series(pd.DataFrame(rows, columns=["codec", "label", "setting"]), True)
    assert summary.series.tolist()[: len(variants)] == ["necgs rate curve"] * len(variants)
    assert summary.series.tolist()[len(variants) :] == ["necgs quick small", "draco", "draco"]
    config = {
        "dataset": "cad",
        "limit": 2,
        "necgs": variants,
        "codecs": ["necgs", "draco"],
        "ablation": choices.RATE_CURVE,
    }
    assert views.run_label(5, config).startswith(f"run 5: cad x2, necgs rate curve x{len(variants)} [ablation")
