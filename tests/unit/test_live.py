"""A job watched as it computes: the training snapshot hook, a prior's shapes one by one (the stored
run unchanged), the live panel's tick, and the progress display (one writer, the visitor's own job)."""

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from necgs.coding.archive import ArchiveReader
from necgs.config import TrainConfig
from necgs.evaluation.runner import StageEvent
from necgs.evaluation.runs import RunStore
from necgs.model.decoder import decoder_config
from necgs.settings import setting_dict, setting_label
from necgs.training.features import fit_features
from necgs.training.train import train_autodecoder
from necgs.training.watch import Snapshot, current_watch, watching
from necgs.webapp import decoders, live, live_panel, running
from necgs.webapp.first_launch import BackgroundRun
from necgs.webapp.jobs import JobQueue
from necgs.webapp.progress import JobProgress


def spheres(K: int, radii) -> torch.Tensor:
    g = torch.linspace(-1, 1, K)
    x, y, z = torch.meshgrid(g, g, g, indexing="ij")
    r = torch.sqrt(x**2 + y**2 + z**2)
    h = 2 / (K - 1)
    return torch.stack([torch.cat([((r - a) / (2 * h)).clamp(-1, 1)[None], torch.zeros(3, K, K, K)]) for a in radii])


def only_priors_in(monkeypatch, *folders) -> None:
    import os

    from necgs.priors import installed

    monkeypatch.setattr(installed, "SHIPPED_DIR", installed.SHIPPED_DIR / "not-here")
    monkeypatch.setenv("NECGS_PRIOR_DIRS", os.pathsep.join(map(str, folders)))


def same_archive(a, b) -> None:
    """Two archives hold the same sections and metadata (but the training seconds they record)."""
    ra, rb = ArchiveReader(a), ArchiveReader(b)
    assert ra.section_names() == rb.section_names()
    for name in ra.section_names():
        assert ra.read_section(name) == rb.read_section(name), name
    assert {k: v for k, v in ra.metadata.items() if k != "train_seconds"} == {
        k: v for k, v in rb.metadata.items() if k != "train_seconds"
    }


# ---------------------------------------------------------------------------- the snapshot hook
def test_a_watched_training_ends_where_an_unwatched_one_does_and_its_snapshots_decode_the_weights_so_far():
    vols = spheres(16, [0.4, 0.55, 0.7])
    tcfg = TrainConfig(epochs=8, lr=1e-2, batch_size=2, checkpoint_every=0, device="cpu", block_size=8)
    dcfg = decoder_config(16, 6, feature_channels=4)
    plain = train_autodecoder(vols, dcfg, tcfg, progress=False)
    seen = []
    watched = train_autodecoder(
        vols, dcfg, tcfg, progress=False, watch=lambda s: seen.append((s.kind, s.epoch, s.loss, s.decode(s.epoch % 3)))
    )
    assert [(kind, epoch) for kind, epoch, *_ in seen] == [("train", e) for e in range(1, 9)]
    assert [loss for _, _, loss, _ in seen] == watched.losses == plain.losses
    assert all((watched.weights[k].symbols == plain.weights[k].symbols).all() for k in plain.weights)
    assert (watched.features.symbols == plain.features.symbols).all()
    with torch.no_grad():  # the last snapshot decodes what the trained codec decodes (shape 8 % 3 = 2)
        final = watched.decoder()(watched.features.value()[2:3])[0]
    assert seen[-1][3].shape == (4, 16, 16, 16) and torch.allclose(seen[-1][3], final, atol=1e-5)
    with pytest.raises(IndexError, match="not among the 3 shapes"):
        Snapshot("train", 1, 1, 0.0, 0.0, 3, lambda i: vols[i]).decode(3)


def test_feature_fitting_is_watched_through_the_threads_watcher_only():
    vols = spheres(16, [0.4, 0.55, 0.7])
    tcfg = TrainConfig(epochs=30, lr=1e-2, batch_size=3, checkpoint_every=0, device="cpu", block_size=8)
    codec = train_autodecoder(vols, decoder_config(16, 6, feature_channels=4), tcfg, progress=False)
    new = spheres(16, [0.5, 0.62])
    fcfg = TrainConfig(epochs=5, lr=1e-3, device="cpu", block_size=8)
    plain = fit_features(codec, new, fcfg)
    seen, other_thread = [], []
    with watching(lambda s: seen.append((s.kind, s.epoch, s.n_shapes, s.decode(1).shape))):
        watched = fit_features(codec, new, fcfg)
        worker = threading.Thread(target=lambda: other_thread.append(current_watch()))
        worker.start()
        worker.join()
    assert seen == [("features", e, 2, (4, 16, 16, 16)) for e in range(1, 6)]
    assert (watched.symbols == plain.symbols).all() and other_thread == [None] and current_watch() is None


# ---------------------------------------------------------------------------- the live feed in a run
@pytest.fixture
def tiny_prior(monkeypatch, tiny_prior_dir):
    """The tiny prior's setting; its shapes' features get 12 visits instead of the default's 150 (time)."""
    from dataclasses import replace

    from necgs.priors.prior import Prior

    only_priors_in(monkeypatch, tiny_prior_dir)
    budget = Prior.train_config
    monkeypatch.setattr(Prior, "train_config", lambda self, *a: replace(budget(self, *a), epochs=12))
    return decoders.prior_setting("tiny")


def test_a_priors_shapes_arrive_one_by_one_before_the_run_and_the_run_is_unchanged(tmp_path, monkeypatch, tiny_prior):
    from necgs.compression import compress
    from necgs.io.datasets import resolve_dataset
    from necgs.io.loading import load_meshes

    events = []
    feed = live.LiveFeed(tmp_path / "live")
    show = feed.show
    monkeypatch.setattr(feed, "show", lambda *a: events.append(("shape", show(*a))) or events[-1][1])
    evaluate = running.evaluate
    monkeypatch.setattr(running, "evaluate", lambda *a, **k: events.append(("evaluate", None)) or evaluate(*a, **k))
    watched = list(running.run_stages("cad", ["necgs"], [tiny_prior], 3, 2000, live=feed))[-1].run
    shapes = [e[1] for e in events[: [e[0] for e in events].index("evaluate")]]
    assert [s.name for s in shapes][0] == "cad_000" and sorted(s.name for s in shapes) == [
        "cad_000",
        "cad_001",
        "cad_002",
    ]
    assert all(s.what == "prior tiny: start feature, before fitting" and s.glb for s in shapes)
    assert [s.at_s for s in shapes] == sorted(s.at_s for s in shapes)  # published as each one ends
    later = [e[1] for e in events if e[0] == "shape"][3:]
    assert later and all(s.what.startswith("prior tiny: feature update ") for s in later)  # the joint fit, watched
    state = feed.state()
    assert [c.label for c in state.curves] == ["prior tiny"] and state.curves[0].unit == "feature update"
    assert state.first_shape_s == shapes[0].at_s and len(state.shapes) == 3
    assert len(list((tmp_path / "live").glob("*.glb"))) <= live.KEEP_FILES

    plain = list(running.run_stages("cad", ["necgs"], [tiny_prior], 3, 2000))[-1].run
    store = RunStore()
    same_archive(store.archive_file(watched, "necgs::prior tiny"), store.archive_file(plain, "necgs::prior tiny"))
    a, b = store.load(watched)[1], store.load(plain)[1]
    assert a.cd.tolist() == b.cd.tolist() and a.cd_fitted.tolist() == b.cd_fitted.tolist()
    cli = tmp_path / "cli.ncgs"  # what `necgs compress --prior tiny` writes on the same shapes
    compress(load_meshes(resolve_dataset("cad")).meshes[:3], cli, prior="tiny", progress=lambda *a: None)
    same_archive(store.archive_file(watched, "necgs::prior tiny"), cli)


def test_a_training_shows_its_loss_and_one_shape_decoded_so_far(tmp_path, monkeypatch):
    monkeypatch.setattr(live, "SNAPSHOT_EVERY_S", 0.0)
    monkeypatch.setattr(live, "SNAPSHOT_SHARE", float("inf"))  # a decode after every epoch, however slow
    setting = setting_dict({"preset": "quick", "width": "tiny", "epochs": 4, "resolution": 16})
    label = setting_label(setting)
    feed = live.LiveFeed(tmp_path / "live")
    watched = list(running.run_stages("cad", ["necgs"], [setting], 2, 2000, live=feed))[-1].run
    state = feed.state()
    assert [(c.label, c.unit, c.x) for c in state.curves] == [(label, "epoch", [1, 2, 3, 4])]
    assert [s.name for s in state.shapes] == ["cad_000"]  # one shape, decoded again as it learns
    assert state.latest.what == f"{label}: epoch 4/4" and state.latest.cd > 0
    plain = list(running.run_stages("cad", ["necgs"], [setting], 2, 2000))[-1].run
    store = RunStore()
    key = f"necgs::{label}"
    same_archive(store.archive_file(watched, key), store.archive_file(plain, key))


def test_snapshots_are_decoded_at_most_every_few_seconds(tmp_path):
    feed = live.LiveFeed(tmp_path)
    meshes = [SimpleNamespace(name="a")]
    watch = live.LiveWatch(feed, meshes, {"v": live.VariantFrame(None, True)})
    decodes = []
    snap = SimpleNamespace(kind="train", epoch=1, epochs=9, loss=0.5, n_shapes=1, decode=decodes.append)
    watch(snap)  # outside a NeCGS variant: nothing
    assert feed.state().curves == ()
    watch.on_stage(StageEvent(0, "necgs", "v", "encode", "train", 0.0))
    watch._last = time.monotonic()  # as if it had just decoded
    for epoch in range(1, 4):
        watch(SimpleNamespace(**{**vars(snap), "epoch": epoch}))
    assert feed.state().curves[0].x == [1, 2, 3] and decodes == []
    assert "v: epoch 3/9, loss 0.5000" in feed.state().text


def test_a_trainings_last_epoch_is_always_decoded(tmp_path, monkeypatch):
    monkeypatch.setattr(live, "grid_transform", lambda mesh, fit: None)
    monkeypatch.setattr(live, "decoded_mesh", lambda volume, transform, name, deform: volume)
    feed = live.LiveFeed(tmp_path)
    shown = []
    monkeypatch.setattr(feed, "show", lambda decoded, original, what: shown.append(what))
    watch = live.LiveWatch(feed, [SimpleNamespace(name="a")], {"v": live.VariantFrame(None, True)})
    watch.on_stage(StageEvent(0, "necgs", "v", "encode", "train", 0.0))
    watch._last = time.monotonic()  # as if it had just decoded: epochs 1-8 wait
    for epoch in range(1, 10):
        watch(SimpleNamespace(kind="train", epoch=epoch, epochs=9, loss=0.5, n_shapes=1, decode=lambda i: "v"))
    assert shown == ["v: epoch 9/9"]


# ---------------------------------------------------------------------------- the page's tick
@pytest.fixture
def queue(monkeypatch):
    jobs = JobQueue()
    monkeypatch.setattr(live_panel, "JOBS", jobs)
    return jobs


def background(monkeypatch, **fields) -> threading.Event:
    """The first-launch run as ``fields`` say; it counts as running until the event returned is set."""
    done = threading.Event()
    thread = threading.Thread(target=done.wait, daemon=True)
    thread.start()
    monkeypatch.setattr(live_panel, "INITIAL_RUN", BackgroundRun(thread=thread, **fields))
    return done


def test_the_progress_display_shows_the_visitors_own_job_and_clears_after_the_first_launch_run(monkeypatch, queue):
    done = background(monkeypatch, fraction=0.4, text="run on 'figures': train")
    assert "first launch: run on &#x27;figures&#x27;: train (40%)" in live_panel.progress_box("alice")
    mine = queue.join("alice")
    mine.report(0.25, "necgs [quick tiny]: train")
    box = live_panel.progress_box("alice")
    assert "your job: necgs [quick tiny]: train" in box and "25%" in box and "first launch" not in box
    queue.join("bob")
    box = live_panel.progress_box("bob")
    assert "number 2 of 2 (1 ahead)" in box and "necgs [quick tiny]: train" in box and "first launch" not in box
    queue.leave(mine)
    assert "your job" in live_panel.progress_box("bob")
    done.set()
    live_panel.INITIAL_RUN.thread.join()
    live_panel.INITIAL_RUN.fraction, live_panel.INITIAL_RUN.text = 1.0, "representation metrics"
    assert live_panel.progress_box("alice") == ""  # nothing stays once the first-launch work has ended


def test_the_tick_shows_the_panel_then_its_content_and_then_only_what_changed(tmp_path, monkeypatch, queue):
    from necgs.io.mesh import Mesh

    background(monkeypatch).set()
    live_panel.INITIAL_RUN.thread.join()
    monkeypatch.setattr(live_panel, "request_session", lambda request: "carol")
    monkeypatch.setattr(live_panel, "RESEND_FIRST_S", 0.0)
    out = live_panel.on_live_tick(None, None)
    assert out[0] == "" and all(u == {"__type__": "update"} for u in out[1:6])
    feed = live.start_feed("carol", tmp_path)
    box = Mesh(
        torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64).numpy(),
        torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]).numpy(),
        "tet",
    )
    feed.add_loss("quick tiny", "epoch", 1, 0.3)
    shape = feed.show(box, box, "quick tiny: epoch 1/5")
    out = live_panel.on_live_tick(out[-1], None)
    assert out[1] == {"__type__": "update", "visible": True} and "value" not in out[4]  # the panel first
    out = live_panel.on_live_tick(out[-1], None)
    assert "quick tiny" in out[2] and out[3] is not None and out[4]["value"] == shape.glb
    assert out[5].shape == (1, 4) and out[5]["shape"].tolist() == ["tet"]
    out = live_panel.on_live_tick(out[-1], None)  # the first shape again, by another name
    assert out[4]["value"].endswith(f"again_{Path(shape.glb).name}") and Path(out[4]["value"]).is_file()
    assert all(u == {"__type__": "update"} for u in out[:4] + out[5:6])
    out = live_panel.on_live_tick(out[-1], None)
    assert all(u == {"__type__": "update"} for u in out[:6])  # nothing changed: nothing sent
    monkeypatch.setattr(live_panel, "CURVE_EVERY_S", 0.0)
    time.sleep(0.01)
    feed = live.start_feed("carol", tmp_path)  # the next job, with no curve yet
    feed.say("prior tiny: each shape from the prior's start feature")
    out = live_panel.on_live_tick(out[-1], None)
    assert out[3] is not None and not isinstance(out[3], dict) and len(out[3].data) == 0  # the old curve goes
    assert out[4] == {"__type__": "update", "value": None, "label": "decoded so far"}  # and the old shape


def test_the_preview_is_weighted_at_the_head_of_the_job():
    reports = []
    prior, peer = {"prior": "tiny"}, {"q": 6}
    tracker = JobProgress.for_run(
        ["necgs", "draco"], {"necgs": [prior], "draco": [peer]}, 4, lambda f, t: reports.append(f), prior
    )
    assert tracker.head > 0 and tracker.plan[0]["fit"] == 0.0
    tracker.previewing(0.5)
    tracker.previewing(1.0)
    tracker.on_stage(StageEvent(-1, "floor", "", "metrics", "metrics", 0.0))
    tracker.on_stage(StageEvent(0, "necgs", "prior tiny", "encode", "train", 0.5))
    assert reports == sorted(reports) and reports[1] == pytest.approx(tracker.head / tracker.total)
    assert reports[-1] < 1.0
