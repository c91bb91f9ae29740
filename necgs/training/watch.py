"""Watching a training as it runs: after every epoch a watcher sees the loss and may decode a shape.

:func:`necgs.training.train.train_autodecoder` and :func:`necgs.training.features.fit_features`
call their watcher with a :class:`Snapshot` after each epoch (feature visit). Decoding is left to
the watcher (:meth:`Snapshot.decode`), so a watcher that only plots the loss costs nothing, and
one that shows a decoded shape chooses how often it pays for a decode. A snapshot never changes
the training: it reads the weights and features under ``torch.no_grad`` and draws no random
numbers, so a watched run writes the same archive as an unwatched one.

A loop takes its watcher as an argument; where the loop sits several layers below the caller
(the app runs training through the evaluation runner, a codec and ``compress``), the caller
installs one for the calls it makes in its own thread with :func:`watching`, and a loop given
none uses :func:`current_watch`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Snapshot:
    """A training after one epoch, as a live display needs it.

    Attributes:
        kind: "train" (a decoder and the features trained together) or "features" (features
            fitted against a frozen decoder: a prior, ``add``).
        epoch: Epochs (feature visits) done.
        epochs: Epochs of the whole run.
        loss: Mean loss of this epoch.
        seconds: Seconds since the loop started.
        n_shapes: Shapes being trained (their indices are the volumes').
        decode_fn: Shape index -> its (4, K, K, K) volume decoded with the quantized weights and
            feature as they are now (what an archive written now would decode to).
    """

    kind: str
    epoch: int
    epochs: int
    loss: float
    seconds: float
    n_shapes: int
    decode_fn: Callable[[int], torch.Tensor]

    def decode(self, shape: int) -> torch.Tensor:
        """The (4, K, K, K) volume of shape ``shape`` (an index among the volumes trained), on the CPU.

        Raises:
            IndexError: No such shape.
        """
        if not 0 <= shape < self.n_shapes:
            raise IndexError(f"shape {shape} is not among the {self.n_shapes} shapes trained")
        with torch.no_grad():
            return self.decode_fn(shape).detach().cpu()


#: watch(snapshot), called after every epoch.
Watch = Callable[[Snapshot], None]

_CURRENT: ContextVar[Watch | None] = ContextVar("necgs_training_watch", default=None)


@contextmanager
def watching(watch: Watch | None) -> Iterator[None]:
    """Install ``watch`` for the training loops run inside the block, in this thread (None: no watcher).

    Each thread starts without a watcher, so one job's watcher never sees another thread's training.
    """
    token = _CURRENT.set(watch)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_watch() -> Watch | None:
    """The watcher installed by :func:`watching` in this thread's context, if any."""
    return _CURRENT.get()
