"""What a job shows while it computes: each shape as soon as it is decoded, the loss curve, and one
shape decoded with the weights so far, with its CD.

A job writes to its session's :class:`LiveFeed` (from its own thread); the page reads it once a
second (:mod:`necgs.webapp.live_panel`). Two things write to a feed:

- :func:`preview_prior`: before a prior variant runs, each shape's volume is fitted (or read from
  the fitting cache, which the run then reads again), started from the prior's start feature
  (:func:`necgs.priors.start.start_features`) and decoded at once, one shape after the other;
- :class:`LiveWatch`: a :mod:`necgs.training.watch` watcher installed around the run, which adds
  every epoch's loss to the curve of the variant the runner is computing and, at most every
  :data:`SNAPSHOT_EVERY_S` seconds and never more than :data:`SNAPSHOT_SHARE` of the time,
  decodes one shape with the weights and features as they are.

Nothing here changes what the run computes: the preview only fills the fitting cache the run
would fill, and a snapshot reads the training without touching it (so the run's archive is the
one ``necgs compress`` writes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from necgs.config import FitConfig
from necgs.errors import StopCheck, stop_if_asked
from necgs.evaluation.runner import StageEvent
from necgs.evaluation.runs import slug
from necgs.geometry.dmc import mesh_from_volume
from necgs.geometry.fit import fitted_volume, grid_transform
from necgs.io.mesh import Mesh, Transform
from necgs.metrics import compare_meshes
from necgs.model.quant import quantize
from necgs.priors.installed import find_prior
from necgs.priors.start import start_features
from necgs.settings import read_setting, setting_label
from necgs.training.watch import Snapshot
from necgs.visualize import error_colored_glb

#: Surface samples of a live CD: a quick estimate, labelled as such (the run's table uses more).
LIVE_SAMPLES = 10_000
#: A training is decoded at most this often (seconds) for the live viewer...
SNAPSHOT_EVERY_S = 5.0
#: ... and its decodes take at most this share of the training's time (a slow decode waits longer).
SNAPSHOT_SHARE = 0.1
#: Live GLB files kept per session (older ones are removed; the page shows the newest).
KEEP_FILES = 6


@dataclass(frozen=True)
class LiveShape:
    """A decoded shape shown while the job computes.

    Attributes:
        name: The shape's name.
        cd: Its Chamfer distance to the original (:data:`LIVE_SAMPLES` samples; inf: no surface).
        what: What decoded it (``prior bodies: start feature, before fitting``, ``quick tiny: epoch 40/150``).
        glb: The error-coloured mesh for the viewer (None: no surface decoded).
        at_s: Seconds since the job started.
    """

    name: str
    cd: float
    what: str
    glb: str | None
    at_s: float


@dataclass
class Curve:
    """One variant's loss, one point per epoch (or feature visit)."""

    label: str
    unit: str
    x: list[int] = field(default_factory=list)
    y: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class LiveState:
    """A copy of a feed for the page to draw (no lock needed).

    Attributes:
        version: Increases with every change.
        text: What the job is doing, in one line.
        order: The job's NeCGS variant labels, in run order (the colours of the RD figures).
        curves: Loss curves by variant label.
        shapes: The newest decode of each shape, in the order they first appeared.
        latest: The newest decoded shape (the live viewer's).
        first_shape_s: Seconds from the job's start to its first decoded shape.
        watch_s: Seconds the job's trainings spent on live decodes (their cost to the job).
    """

    version: int
    text: str
    order: tuple[str, ...]
    curves: tuple[Curve, ...]
    shapes: tuple[LiveShape, ...]
    latest: LiveShape | None
    first_shape_s: float | None
    watch_s: float = 0.0


class LiveFeed:
    """What a session's job shows live; written by the job's thread, read by the page.

    Args:
        folder: Where its GLB files go (the session's folder, which the server may serve).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._version = 0
        self._text = ""
        self._order: tuple[str, ...] = ()
        self._curves: dict[str, Curve] = {}
        self._shapes: dict[str, LiveShape] = {}
        self._latest: LiveShape | None = None
        self._first: float | None = None
        self._files: list[Path] = []
        self._vmax: dict[str, float] = {}
        self._watch_s = 0.0

    def seconds(self) -> float:
        """Seconds since the job started."""
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        """What the job is doing now."""
        with self._lock:
            self._text, self._version = text, self._version + 1

    def set_order(self, labels: Sequence[str]) -> None:
        """The job's NeCGS variant labels in run order (each curve takes its variant's colour)."""
        with self._lock:
            self._order = tuple(labels)

    def add_loss(self, label: str, unit: str, x: int, loss: float) -> None:
        """One point of ``label``'s loss curve."""
        with self._lock:
            curve = self._curves.setdefault(label, Curve(label, unit))
            curve.x.append(int(x))
            curve.y.append(float(loss))
            self._version += 1

    def watched(self, seconds: float) -> None:
        """Count ``seconds`` a training spent on a live decode."""
        with self._lock:
            self._watch_s += seconds

    def show(self, decoded: Mesh, original: Mesh, what: str) -> LiveShape:
        """Measure a decoded shape (in the original's frame) against its original and publish it.

        The error colours of a shape keep the scale of its first decode, so a shape decoded
        again shows its progress.
        """
        cd = float(compare_meshes(decoded, original, LIVE_SAMPLES).cd) if decoded.n_faces else float("inf")
        glb = None
        if decoded.n_faces:
            with self._lock:
                self._version += 1
                path = self.folder / f"live_{self._version}_{slug(original.name)}.glb"
                vmax = self._vmax.get(original.name)
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                written, vmax = error_colored_glb(decoded, original, path, vmax)
                glb = str(written)
            except OSError:  # the session's folder went away (its tab closed): nothing to show
                pass
        shape = LiveShape(original.name, cd, what, glb, self.seconds())
        with self._lock:
            if glb is not None:
                self._vmax.setdefault(original.name, vmax)
                self._files.append(Path(glb))
            self._shapes[original.name] = shape
            self._latest = shape
            if self._first is None:
                self._first = shape.at_s
            self._version += 1
            stale, self._files = self._files[:-KEEP_FILES], self._files[-KEEP_FILES:]
        for old in stale:
            old.unlink(missing_ok=True)
        return shape

    def state(self) -> LiveState:
        """A consistent copy to draw."""
        with self._lock:
            curves = tuple(Curve(c.label, c.unit, list(c.x), list(c.y)) for c in self._curves.values())
            return LiveState(
                self._version,
                self._text,
                self._order,
                curves,
                tuple(self._shapes.values()),
                self._latest,
                self._first,
                self._watch_s,
            )


def decoded_mesh(volume: torch.Tensor, transform: Transform, name: str, deform: bool) -> Mesh:
    """A decoded (4, K, K, K) volume's mesh in the original shape's frame."""
    grid = mesh_from_volume(volume, name, deform=deform)
    return Mesh(transform.invert(grid.vertices), grid.faces, name)


# ---------------------------------------------------------------------------- a prior's shapes, one by one
def preview_prior(
    feed: LiveFeed,
    meshes: Sequence[Mesh],
    setting: dict,
    cancel: StopCheck | None = None,
    report: Callable[[float], None] | None = None,
) -> None:
    """Each shape against a prior as soon as its volume is ready: its start feature, decoded.

    The volumes are the ones the run fits (the prior's frame at the setting's budget, through
    the content-keyed cache, which the run then reads); the first shape is fitted alone, so it
    shows first, the others two at a time. Each is decoded from the prior's start feature (its
    encoder's, or the nearest training shape's) quantized on the prior's grid: what the archive
    would decode to before any fitting. The run then fits every feature and shows the better ones.

    Args:
        feed: Where each shape goes.
        meshes: The shapes, in run order.
        setting: The prior variant's NeCGS setting.
        cancel: Asked before every shape and fitting iteration; True stops with Cancelled.
        report: Called with the done fraction after each shape.
    """
    tree = read_setting(setting)
    prior = find_prior(tree.prior)
    label = setting_label(setting)
    fit = prior.fit_config(tree.prior_fit, "cpu")
    decoder = prior.decoder()
    feed.say(f"{label}: each shape from the prior's start feature, before fitting")
    for done, (i, volume, transform) in enumerate(volumes_as_fitted(meshes, fit, cancel), 1):
        stop_if_asked(cancel)
        with torch.no_grad():
            start = quantize(start_features(prior, volume[None], decoder), prior.features.spec)
            decoded = decoder(start)[0]
        feed.show(
            decoded_mesh(decoded, transform, meshes[i].name, deform=True),
            meshes[i],
            f"{label}: start feature, before fitting",
        )
        if report is not None:
            report(done / len(meshes))


def volumes_as_fitted(
    meshes: Sequence[Mesh], fit: FitConfig, cancel: StopCheck | None = None
) -> Iterator[tuple[int, torch.Tensor, Transform]]:
    """(index, volume, transform) of each mesh as its fit ends: the first alone (so it is ready
    soonest), the others two at a time (the threads overlap, as in
    :func:`necgs.geometry.fit.fit_volumes`, whose cache these fill)."""
    if not meshes:
        return
    yield 0, *fitted_volume(meshes[0], fit, cancel=cancel)[:2]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {pool.submit(fitted_volume, meshes[i], fit, True, cancel): i for i in range(1, len(meshes))}
        try:
            for future in as_completed(futures):
                yield futures[future], *future.result()[:2]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # the running shapes stop at their next check
            raise


# ---------------------------------------------------------------------------- a training, watched
@dataclass(frozen=True)
class VariantFrame:
    """How a NeCGS variant's decoded volumes become meshes: its fitting frame and whether it deforms."""

    fit: FitConfig
    deform: bool


class LiveWatch:
    """A :mod:`necgs.training.watch` watcher for one job: each variant's loss curve, and one shape
    decoded with the weights so far at most every :data:`SNAPSHOT_EVERY_S` seconds, and always
    after a training's last epoch (a training of seconds shows its result, not its first epoch's).

    The runner's stage events (:meth:`on_stage`) say which NeCGS variant is computing, and so
    which curve a snapshot extends and which frame its decodes take. A set-trained decoder
    always shows the first shape (a person watches one shape take form); a prior's feature
    fitting goes round the shapes, so each one's CD so far is refreshed in turn.

    Args:
        feed: Where it goes.
        meshes: The run's shapes (a snapshot's shape i is ``meshes[i]``).
        frames: Per NeCGS variant label, its frame.
    """

    def __init__(self, feed: LiveFeed, meshes: Sequence[Mesh], frames: dict[str, VariantFrame]) -> None:
        self.feed, self.meshes, self.frames = feed, list(meshes), frames
        feed.set_order(list(frames))
        self.label: str | None = None
        self._transforms: dict[tuple[str, int], Transform] = {}
        self._last = -np.inf
        self._spent = 0.0
        self._decodes = 0

    def on_stage(self, event: StageEvent) -> None:
        """Runner callback: which variant computes now (None outside NeCGS)."""
        self.label = event.label if event.codec == "necgs" else None

    def __call__(self, snap: Snapshot) -> None:
        """Training callback after every epoch."""
        label = self.label
        if label is None or label not in self.frames or snap.n_shapes != len(self.meshes):
            return  # not a run's variant (e.g. extra starts of a repair): nothing to show
        unit = "epoch" if snap.kind == "train" else "feature update"
        self.feed.add_loss(label, unit, snap.epoch, snap.loss)
        self.feed.say(f"{label}: {unit} {snap.epoch}/{snap.epochs}, loss {snap.loss:.4f}")
        now = time.monotonic()
        last = snap.kind == "train" and snap.epoch == snap.epochs
        wait = max(SNAPSHOT_EVERY_S, self._spent / SNAPSHOT_SHARE / max(self._decodes, 1))
        if now - self._last < wait and not last:
            return
        i = 0 if snap.kind == "train" else self._decodes % snap.n_shapes
        frame = self.frames[label]
        mesh = self.meshes[i]
        transform = self._transforms.get((label, i)) or grid_transform(mesh, frame.fit)
        self._transforms[(label, i)] = transform
        decoded = decoded_mesh(snap.decode(i), transform, mesh.name, frame.deform)
        self.feed.show(decoded, mesh, f"{label}: {unit} {snap.epoch}/{snap.epochs}")
        self._last = time.monotonic()
        self._spent += self._last - now
        self._decodes += 1
        self.feed.watched(self._last - now)


# ---------------------------------------------------------------------------- one feed per session
_FEEDS: dict[str, LiveFeed] = {}
_FEEDS_LOCK = threading.Lock()


def start_feed(session: str, folder: Path, active: Sequence[str] = ()) -> LiveFeed:
    """A fresh feed for the session's new job (replacing its last one); feeds of sessions not in
    ``active`` (ended ones) are dropped."""
    feed = LiveFeed(folder / "live")
    with _FEEDS_LOCK:
        for other in [s for s in _FEEDS if active and s not in active and s != session]:
            del _FEEDS[other]
        _FEEDS[session] = feed
    return feed


def feed_of(session: str) -> LiveFeed | None:
    """The session's feed (its current or last job's), if any."""
    with _FEEDS_LOCK:
        return _FEEDS.get(session)
