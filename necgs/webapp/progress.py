"""One progress figure for a whole job, monotone and weighted by what each stage costs.

The runner reports where it is (:class:`necgs.evaluation.runner.StageEvent`); each stage of the
plan gets a weight in estimated seconds (fitting and training dominate a NeCGS run, the
peers and the metrics are cheap), and the fraction shown is the weighted share done, never
going backwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from necgs.evaluation.runner import StageEvent
from necgs.priors.installed import list_priors
from necgs.settings import read_setting

#: Estimated seconds per shape on 2 shared CPU cores at K = 32, from runs of the built-in sets
#: (measurements: docs/ARCHITECTURE.md, "The app", "Progress estimates").
FIT_S = 2.0  # TSDF-Def fitting, 50 iterations (0 when cached; then the bar jumps ahead)
TRAIN_S = 0.15  # per shape and epoch, width tiny, with SSIM; scaled by width and K^3
NO_SSIM = 0.5  # share of the training cost left without the SSIM term
DECODE_S = 0.08  # decoder + DMC
METRICS_S = 0.4  # CD / NC / F1 at 1e5 samples
PEER_S = 0.05  # encode + decode of a classical codec
REPRESENTATION_S = 0.5  # the fitted volume's own mesh and its metrics at 1e5 samples (the teaching breakdown)
WIDTH_COST = {"tiny": 1.0, "small": 2.0, "medium": 4.0, "large": 8.0}
#: Against a prior (features only, :class:`necgs.config.PriorFitConfig` defaults): per shape at K = 32,
#: fitting at 20 iterations and one feature visit (measurements: docs/ARCHITECTURE.md, "The app",
#: "Progress estimates").
PRIOR_FIT_S = 0.8
PRIOR_VISIT_S = 0.015
PRIOR_START_S = 2.0  # reading the prior and choosing each shape's starting feature
#: Per shape and fine-tuning step at K = 64, 32 blocks.
FINE_TUNE_STEP_S = 0.05
#: The first look at a shape against a prior (start feature, decode, mesh, live CD and viewer file),
#: on top of fitting its volume (measurements: docs/ARCHITECTURE.md, "The app", "Progress estimates").
PREVIEW_S = 1.0
NECGS_STAGES = ("fit", "train", "code")

#: report(fraction in [0, 1], description)
Report = Callable[[float, str], None]


def necgs_weights(setting: dict, n_shapes: int) -> dict[str, float]:
    """Estimated seconds of each stage of one NeCGS setting."""
    tree = read_setting(setting)
    if tree.prior is not None:
        return prior_weights(setting, n_shapes)
    cfg = tree.config
    scale = (cfg.fit.resolution / 32) ** 3
    # A patch step costs about what a dense step at K = 32 costs, so patch training scales with K, not K^3
    train_scale = cfg.fit.resolution / 64 if cfg.train.mode == "patch" else scale
    width = WIDTH_COST.get(str(cfg.width), 2.0) * (1.0 if cfg.train.use_ssim else NO_SSIM)
    return {
        "fit": FIT_S * n_shapes * (cfg.fit.resolution / 32) ** 2 * cfg.fit.iterations / 50,
        "train": TRAIN_S * n_shapes * cfg.train.epochs * width * train_scale,
        "code": 0.5 + 0.02 * n_shapes,
        "decode": DECODE_S * n_shapes * scale,
        "metrics": METRICS_S * n_shapes,
    }


def prior_weights(setting: dict, n_shapes: int) -> dict[str, float]:
    """Estimated seconds of each stage of a NeCGS setting against a prior (K from the installed prior)."""

    tree = read_setting(setting)
    K = next((int(p["resolution"] or 32) for p in list_priors() if p["name"] == tree.prior), 32)
    fit = tree.prior_fit
    visits = fit.fine_tune_visits if fit.fine_tune_steps else fit.visits
    tuning = FINE_TUNE_STEP_S * n_shapes * fit.fine_tune_steps * fit.fine_tune_blocks / 32 * (K / 64)
    return {
        "fit": PRIOR_START_S + PRIOR_FIT_S * n_shapes * (K / 32) * fit.fit_iterations / 20,
        "train": PRIOR_VISIT_S * n_shapes * visits * (1 + 0.5 * (K / 32 - 1)) + tuning,
        "code": 0.5 + 0.1 * n_shapes,
        "decode": DECODE_S * n_shapes * (K / 32) ** 3,
        "metrics": METRICS_S * n_shapes,
    }


def peer_weights(n_shapes: int) -> dict[str, float]:
    """Estimated seconds of each stage of one classical codec setting."""
    return {"encode": PEER_S * n_shapes, "decode": PEER_S * n_shapes, "metrics": METRICS_S * n_shapes}


@dataclass
class JobProgress:
    """Turns stage events into one monotone fraction of the whole job.

    Attributes:
        plan: Per (codec, setting) of the run, in run order, its stage weights.
        floor: Weight of the metric floor computed first.
        tail: Weight of work after the runner (representation metrics, saving).
        report: Called with (fraction, description) on every update.
        head: Weight of work before the runner (the first look at each shape against a prior).
    """

    plan: list[dict[str, float]]
    floor: float
    tail: float
    report: Report
    head: float = 0.0
    fraction: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def for_run(
        cls,
        codecs: Sequence[str],
        settings: dict[str, list[dict]],
        n_shapes: int,
        report: Report,
        preview: dict | None = None,
    ) -> JobProgress:
        """The weights of a run of ``codecs`` with these settings on ``n_shapes`` shapes; ``preview``:
        the NeCGS setting (a prior's) whose shapes are first shown one by one, fitting the volumes
        its run then reads from the cache (so their weight moves to the head)."""
        pairs = [(codec, setting) for codec in codecs for setting in settings.get(codec, [])]
        plan = [necgs_weights(s, n_shapes) if c == "necgs" else peer_weights(n_shapes) for c, s in pairs]
        tail = REPRESENTATION_S * n_shapes * len(settings.get("necgs", []))
        head = 0.0
        if preview is not None:
            first = pairs.index(("necgs", preview))
            head = plan[first]["fit"] + PREVIEW_S * n_shapes
            plan[first] = {**plan[first], "fit": 0.0}
        return cls(plan, METRICS_S * n_shapes, tail, report, head)

    @property
    def total(self) -> float:
        """Total estimated seconds."""
        return self.head + self.floor + sum(sum(w.values()) for w in self.plan) + self.tail

    def previewing(self, fraction: float) -> None:
        """Progress of the first look at each shape (``fraction`` of it done)."""
        self._advance(self.head * fraction / self.total, "a first look at each shape")

    def _done_before(self, event: StageEvent) -> float:
        if event.index < 0:
            return self.head + event.fraction * self.floor
        weights = self.plan[event.index] if event.index < len(self.plan) else {}
        done = self.head + self.floor + sum(sum(w.values()) for w in self.plan[: event.index])
        order = [*NECGS_STAGES, "decode", "metrics"] if "train" in weights else ["encode", "decode", "metrics"]
        stage = event.stage if event.stage in weights else event.phase
        if stage not in order:
            return done
        for name in order[: order.index(stage)]:
            done += weights.get(name, 0.0)
        return done + event.fraction * weights.get(stage, 0.0)

    def on_stage(self, event: StageEvent) -> None:
        """Runner callback: advance (never back) and report."""
        label = "metric floor" if event.index < 0 else f"{event.codec} [{event.label}]"
        self._advance(self._done_before(event) / self.total, f"{label}: {event.stage}")

    def finishing(self, fraction: float, what: str) -> None:
        """Progress of the work after the runner (``fraction`` of it done)."""
        self._advance((self.total - self.tail * (1 - fraction)) / self.total, what)

    def _advance(self, fraction: float, text: str) -> None:
        with self._lock:
            self.fraction = max(self.fraction, min(fraction, 1.0))
            value = self.fraction
        self.report(value, text)
