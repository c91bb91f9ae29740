"""Long work stops soon after it is asked to: training, fitting, feature fitting, the runner
and a stored job (nothing of a cancelled job stays in the run store)."""

import threading
import time

import numpy as np
import pytest
import torch
import trimesh

from necgs.config import FitConfig, TrainConfig
from necgs.errors import Cancelled
from necgs.evaluation.runner import evaluate
from necgs.evaluation.runs import RunStore
from necgs.geometry.fit import fit_volumes
from necgs.io.loading import LoadedSet
from necgs.io.mesh import Mesh
from necgs.model.decoder import decoder_config
from necgs.training.features import fit_features
from necgs.training.train import train_autodecoder
from necgs.webapp import choices, running

#: How long after the flag is set the work may go on, on an idle machine (the issue's budget is 5 s
#: for a whole job); on a loaded one, at most about one unit of work (a step, an iteration, a shape).
LATENCY_S = 1.0


def spheres(K: int, radii) -> torch.Tensor:
    g = torch.linspace(-1, 1, K)
    x, y, z = torch.meshgrid(g, g, g, indexing="ij")
    r = torch.sqrt(x**2 + y**2 + z**2)
    h = 2 / (K - 1)
    return torch.stack([torch.cat([((r - a) / (2 * h)).clamp(-1, 1)[None], torch.zeros(3, K, K, K)]) for a in radii])


def tori(n: int = 2) -> list[Mesh]:
    out = []
    for i in range(n):
        t = trimesh.creation.torus(major_radius=1 + 0.2 * i, minor_radius=0.3, major_sections=24, minor_sections=12)
        out.append(Mesh(np.asarray(t.vertices), np.asarray(t.faces), f"t{i}"))
    return out


class Flag:
    """A cancel flag set ``delay_s`` after the work first asks it, recording when it is asked."""

    def __init__(self, delay_s: float) -> None:
        self.event = threading.Event()
        self.asked: list[float] = []
        self.set_at: float | None = None
        self.timer = threading.Timer(delay_s, self._trip)

    def _trip(self) -> None:
        self.set_at = time.perf_counter()
        self.event.set()

    def __call__(self) -> bool:
        if not self.asked:
            self.timer.start()
        self.asked.append(time.perf_counter())
        return self.event.is_set()


def assert_stops_soon(work, delay_s: float) -> Flag:
    """Run ``work(flag)`` (``flag`` a stop check) with the flag set after ``delay_s``: it raises
    :class:`Cancelled` at the first check after the flag, within ``LATENCY_S`` or, on a loaded
    machine, one unit of work (the longest gap between two checks before the flag)."""
    flag = Flag(delay_s)
    try:
        with pytest.raises(Cancelled):
            work(flag)
    finally:
        flag.timer.cancel()
    end = time.perf_counter()
    assert flag.set_at is not None, "the work ended before it was cancelled"
    before = [t for t in flag.asked if t < flag.set_at]
    assert len(before) >= 2, "the work did not ask the flag while it ran"
    assert len(flag.asked) - len(before) == 1  # stopped at the first check after the flag
    unit = float(np.max(np.diff(before)))
    assert end - flag.set_at < max(LATENCY_S, 1.5 * unit + 0.2), (end - flag.set_at, unit)
    return flag


def test_training_stops_at_its_next_step():
    vols = spheres(16, [0.4, 0.55])
    tcfg = TrainConfig(epochs=100_000, lr=1e-2, batch_size=2, checkpoint_every=0, device="cpu", block_size=8)
    dcfg = decoder_config(16, 6, feature_channels=4)
    assert_stops_soon(lambda flag: train_autodecoder(vols, dcfg, tcfg, progress=False, cancel=flag), 3.0)


def test_feature_fitting_stops_at_its_next_step():
    vols = spheres(16, [0.4, 0.55])
    tcfg = TrainConfig(epochs=2, lr=1e-2, batch_size=2, checkpoint_every=0, device="cpu", block_size=8)
    codec = train_autodecoder(vols, decoder_config(16, 6, feature_channels=4), tcfg, progress=False)
    long = TrainConfig(epochs=100_000, lr=1e-3, device="cpu", block_size=8)
    assert_stops_soon(lambda flag: fit_features(codec, spheres(16, [0.6]), long, cancel=flag), 3.0)


def test_fitting_stops_at_its_next_iteration():
    cfg = FitConfig(resolution=16, iterations=100_000, samples=1000, device="cpu")
    meshes = tori(3)
    assert_stops_soon(lambda flag: fit_volumes(meshes, cfg, progress=False, cancel=flag, workers=1), 3.0)


def test_the_runner_raises_cancelled_and_a_cancelled_job_stores_nothing():
    loaded = LoadedSet(tori(2), [], [], [50_000, 50_000])
    long = choices.necgs_settings("tiny", "quick", False, True, False, 600)
    flag = threading.Event()
    threading.Timer(3.0, flag.set).start()
    with pytest.raises(Cancelled):
        evaluate(loaded, ["necgs"], settings={"necgs": [long]}, n_samples=1000, cancel=flag)
    before = set(RunStore().runs().id)
    flag = threading.Event()
    threading.Timer(3.0, flag.set).start()
    with pytest.raises(Cancelled):
        running.execute_run("cad", ["necgs", "draco"], [long], 2, 1000, cancel=flag)
    assert set(RunStore().runs().id) == before


def test_an_already_cancelled_evaluation_does_no_work():
    flag = threading.Event()
    flag.set()
    t = time.perf_counter()
    with pytest.raises(Cancelled):
        evaluate(LoadedSet(tori(1), [], [], [50_000]), ["draco"], n_samples=1000, cancel=flag)
    assert time.perf_counter() - t < LATENCY_S
