"""The public ``compress``: its arguments become one explicit way to compress, which then runs.

The ways are :class:`SetTrained` (a decoder trained on the set, optionally at a target rate),
:class:`AgainstPrior` (features fitted against a pretrained decoder) and :class:`BestOfBoth`
(``--prior auto``: every installed prior and a set-trained decoder, the better kept).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from necgs.compression.auto import compress_best
from necgs.compression.set_trained import RateTarget, compress_set_trained
from necgs.compression.steps import CompressResult, Source, StageProgress, as_loaded
from necgs.compression.with_prior import compress_with_prior
from necgs.config import PRESETS, NecgsConfig, PriorFitConfig
from necgs.errors import ConfigError, NecgsError
from necgs.priors.installed import PriorSpec, find_prior
from necgs.priors.prior import Prior

#: How ``prior`` asks for :class:`BestOfBoth` (the CLI's ``--prior auto``).
AUTO = "auto"


@dataclass(frozen=True)
class SetTrained:
    """Train a decoder on the set; with a target, rate control picks its size."""

    target: RateTarget | None = None


@dataclass(frozen=True)
class AgainstPrior:
    """Fit the shapes' features against ``prior`` (fitting budget ``fit``, default :class:`PriorFitConfig`)."""

    prior: Prior
    fit: PriorFitConfig | None = None


@dataclass(frozen=True)
class BestOfBoth:
    """Compress with every installed prior and with a set-trained decoder; keep the better."""

    fit: PriorFitConfig | None = None


Way = SetTrained | AgainstPrior | BestOfBoth


def choose_way(
    prior: PriorSpec | None = None,
    prior_fit: PriorFitConfig | None = None,
    target_ratio: float | None = None,
    target_bytes: int | None = None,
) -> Way:
    """The way ``compress``'s arguments ask for (the prior is found here).

    Raises:
        ConfigError: A target rate with a prior (the prior fixes the decoder).
        PriorNotFoundError: No such prior.
    """
    if prior is None:
        wants_target = target_ratio is not None or target_bytes is not None
        return SetTrained(RateTarget(target_ratio, target_bytes) if wants_target else None)
    if target_ratio is not None or target_bytes is not None:
        raise ConfigError("a target ratio or size cannot be combined with a prior (the prior fixes the decoder)")
    if not isinstance(prior, Prior) and str(prior) == AUTO:
        return BestOfBoth(prior_fit)
    return AgainstPrior(find_prior(prior), prior_fit)


def compress(
    source: Source,
    output: str | os.PathLike,
    config: NecgsConfig | None = None,
    *,
    progress: StageProgress | None = None,
    cancel: Callable[[], bool] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    target_ratio: float | None = None,
    target_bytes: int | None = None,
    prior: PriorSpec | None = None,
    prior_fit: PriorFitConfig | None = None,
) -> CompressResult:
    """Compress a set of meshes into one ``.ncgs`` archive.

    Args:
        source: A folder, zip, file, list of files, list of :class:`Mesh`, or a LoadedSet.
        output: The archive path (written atomically).
        config: Settings (default: the ``quick`` preset).
        progress: Stage callback; ``None`` shows tqdm bars.
        cancel: Polled at every fitting iteration and training step; True stops with Cancelled.
        checkpoint_dir: Training checkpoints (default: a cache folder keyed by the run),
            so an interrupted run resumes.
        target_ratio: Rate control: wanted ratio of the meshes as binary PLY to the archive;
            the width, bits and lambda_R of ``config`` are replaced by a measured table's
            choice (:mod:`necgs.target_rate`).
        target_bytes: Rate control: wanted archive size (exclusive with ``target_ratio``).
        prior: Compress against a pretrained decoder (:mod:`necgs.priors`): a name, a path,
            a :class:`Prior`, or "auto" (the best installed prior or no prior, whichever
            decodes better; ``notes`` says which). Only the features are fitted and stored.
        prior_fit: How shapes are fitted against the prior (default :class:`PriorFitConfig`).

    Returns:
        The :class:`CompressResult`.
    """
    cfg = (config or PRESETS["quick"]).validate()
    loaded = as_loaded(source)
    if not loaded.meshes:
        reasons = "; ".join(str(f) for f in loaded.failures[:3])
        raise NecgsError(f"{source}: no usable mesh" + (f" ({reasons})" if reasons else ""))
    match choose_way(prior, prior_fit, target_ratio, target_bytes):
        case BestOfBoth(fit):
            return compress_best(
                loaded, output, cfg, fit, progress=progress, cancel=cancel, checkpoint_dir=checkpoint_dir
            )
        case AgainstPrior(found, fit):
            return compress_with_prior(loaded, output, found, fit, cfg, progress, cancel)
        case SetTrained(target):
            return compress_set_trained(
                loaded, output, cfg, progress=progress, cancel=cancel, checkpoint_dir=checkpoint_dir, target=target
            )
