"""What the first page shows: the benchmark shipped with the project, and the first-launch run on
the built-in set, computed once in a background thread while the server already answers.

The same thread prepares what makes a prior's first shapes show in seconds: the volumes of the
built-in sets in the installed priors' frames, fitted into the content-keyed fitting cache that
a run with a prior reads (:func:`prepare_prior_volumes`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from necgs.config import PRESETS, PriorFitConfig
from necgs.evaluation.runs import RunStore
from necgs.geometry.fit import fitted_volume
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import load_meshes
from necgs.io.procedural import PROCEDURAL_SETS
from necgs.paths import REPO_ROOT
from necgs.priors.installed import find_prior
from necgs.webapp.advice import prior_for
from necgs.webapp.choices import DEFAULT_DATASET, necgs_settings
from necgs.webapp.decoders import BOTH_CHOICE, TRAIN_DECODER, decoder_variants, installed_priors
from necgs.webapp.jobs import JOBS
from necgs.webapp.messages import scrub_paths
from necgs.webapp.progress import Report
from necgs.webapp.running import METRIC_SAMPLES, execute_run
from necgs.webapp.sessions import SHARED_OWNER

#: The first-launch run's settings, recorded with it so that a later start finds it.
INITIAL_CONFIG = {"initial": 1, "dataset": DEFAULT_DATASET, "limit": 24, "width": "tiny", "epochs": 150}
#: The peers of the first-launch run.
INITIAL_PEERS = ("draco", "decimate-draco")
#: The benchmark shown on the first page: all 88 AMA bodies, `standard` (tied) and `quick` points against
#: decimation + Draco (relative to the checkout; benchmarks/README.md, "`standard` with a tied decoder").
SHIPPED_RESULTS = Path("benchmarks") / "results" / "rd_humans_ama_tied_presets"


def initial_variants() -> list[dict]:
    """The first-launch run's NeCGS settings: a tiny decoder trained on the set and, where one is
    installed, the prior the page advises for the set (a decoder pays off over many shapes, a
    prior over a few: the first page shows both)."""
    trained = necgs_settings(
        INITIAL_CONFIG["width"], "quick", PRESETS["quick"].train.use_ssim, True, False, INITIAL_CONFIG["epochs"]
    )
    prior = prior_for(DEFAULT_DATASET, installed_priors())
    return decoder_variants(f"{BOTH_CHOICE}{prior}" if prior else TRAIN_DECODER, [trained])


def _priors_of(settings: list[dict]) -> list[str | None]:
    return sorted(str(s.get("prior")) for s in settings)


def cached_initial_run() -> int | None:
    """The stored first-launch run, if it was computed before with today's settings (the same
    priors, the same metric samples); one of a store older than owners is adopted: recorded as
    :data:`SHARED_OWNER`'s, so every session sees it."""
    store = RunStore()
    priors = _priors_of(initial_variants())
    for row in store.runs(DEFAULT_DATASET, owners=[SHARED_OWNER, None]).itertuples():
        same = all(row.config.get(k) == v for k, v in INITIAL_CONFIG.items())
        same = same and row.config.get("samples") == METRIC_SAMPLES
        same = same and row.status == "done"
        if same and _priors_of(row.config.get("necgs") or []) == priors and store.has_files(int(row.id)):
            if row.owner is None:
                store.set_owner(int(row.id), SHARED_OWNER)
            return int(row.id)
    return None


def ensure_initial_run(progress: Report | None = None) -> int:
    """The cached first-launch run on the default built-in set (computed once)."""
    run = cached_initial_run()
    if run is not None:
        return run
    return execute_run(
        DEFAULT_DATASET,
        ["necgs", *INITIAL_PEERS],
        initial_variants(),
        INITIAL_CONFIG["limit"],
        METRIC_SAMPLES,
        progress=progress,
        config_extra=INITIAL_CONFIG,
        owner=SHARED_OWNER,
    )


#: Shapes of each built-in set prepared before the first-launch run (the page's default count);
#: the rest of each set follows after it.
PREPARED_FIRST = 6


def prepare_prior_volumes(
    start: int = 0,
    stop: int | None = None,
    report: Callable[[int, int], None] | None = None,
    wait: Callable[[], None] | None = None,
) -> int:
    """Fit the built-in sets' volumes in every installed prior's frame into the fitting cache.

    A run with a prior reads them from there (:func:`necgs.webapp.live.preview_prior` and the
    run itself), so its first shapes show in seconds. Shapes ``start`` .. ``stop`` of each set,
    in turns (shape k of every set before shape k + 1), each frame once (priors that share a
    frame share the volumes); a shape already cached costs a file read.

    Args:
        start: The first shape of each set.
        stop: One past the last (None: every shape).
        report: Called with (done, total) after each shape.
        wait: Called before each shape (the first-launch thread lets visitors' jobs go first).

    Returns:
        How many volumes were fitted now (not found in the cache).
    """
    frames = {}
    for info in installed_priors():
        fit = find_prior(info["name"]).fit_config(PriorFitConfig(), "cpu")
        frames.setdefault(fit.cache_key(), fit)
    sets = [load_meshes(resolve_dataset(name)).meshes[start:stop] for name in PROCEDURAL_SETS]
    turns = range(max(map(len, sets), default=0))
    todo = [(m[k], fit) for k in turns for m in sets if k < len(m) for fit in frames.values()]
    fitted = 0
    for done, (mesh, fit) in enumerate(todo, 1):
        if wait is not None:
            wait()
        fitted += fitted_volume(mesh, fit)[2] > 0
        if report is not None:
            report(done, len(todo))
    return fitted


def visitors_first(poll_s: float = 1.0) -> None:
    """Wait while a visitor's job runs or waits (background preparation takes no CPU from it)."""
    while JOBS.sessions():
        time.sleep(poll_s)


@dataclass
class BackgroundRun:
    """The first-launch work computed in a thread while the server already answers: the first
    shapes' prior volumes, the first-launch run, then the rest of the prior volumes.

    Attributes:
        fraction: Done fraction of the job.
        text: What it is doing.
        run: The run id once done.
        error: Why it failed, if it did.
    """

    fraction: float = 0.0
    text: str = "not started"
    run: int | None = None
    error: str = ""
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is still working."""
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> BackgroundRun:
        """Start the computation (returns at once; a cached run is ready immediately, and the
        prior volumes found cached cost a file read each)."""
        self.run = cached_initial_run()
        self.text = "starting"
        self.thread = threading.Thread(target=self._work, name="necgs-first-launch", daemon=True)
        self.thread.start()
        return self

    def _work(self) -> None:
        def report(fraction: float, text: str) -> None:
            self.fraction, self.text = fraction, text

        def preparing(done: int, total: int) -> None:
            report(done / total, f"fitting the built-in sets' volumes for the priors ({done}/{total})")

        try:
            prepare_prior_volumes(0, PREPARED_FIRST, preparing, visitors_first)
            if self.run is None:
                self.fraction = 0.0
                self.run = ensure_initial_run(lambda f, t: report(f, f"run on '{DEFAULT_DATASET}': {t}"))
            self.fraction = 0.0
            prepare_prior_volumes(PREPARED_FIRST, None, preparing, visitors_first)
            self.fraction, self.text = 1.0, "ready"
        except Exception as exc:  # shown on the page; the server keeps serving
            self.error = scrub_paths(f"{type(exc).__name__}: {exc}")


#: The process's first-launch run (started by ``app.py``, read by the page).
INITIAL_RUN = BackgroundRun()


def shipped_summary() -> pd.DataFrame:
    """The latest real benchmark shipped with the project (all 88 AMA bodies against the peers)."""
    return pd.read_csv(REPO_ROOT / SHIPPED_RESULTS / "summary.csv")
