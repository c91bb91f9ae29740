"""``--prior auto``: compress with every installed prior and with a set-trained decoder, keep the better."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from necgs.compression.decode import decompress
from necgs.compression.set_trained import compress_set_trained
from necgs.compression.steps import CompressResult, StageProgress
from necgs.compression.with_prior import compress_with_prior
from necgs.config import NecgsConfig, PriorFitConfig
from necgs.io.loading import LoadedSet
from necgs.io.mesh import Mesh
from necgs.metrics import compare_meshes
from necgs.priors.installed import find_prior, list_priors
from necgs.priors.prior import Prior

#: A prior within this factor of the set-trained decoder's median Chamfer distance is kept (it is the smaller).
PRIOR_TOLERANCE = 1.1


def compress_best(
    loaded: LoadedSet,
    output: str | os.PathLike,
    cfg: NecgsConfig,
    fit: PriorFitConfig | None = None,
    *,
    progress: StageProgress | None = None,
    cancel: Callable[[], bool] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> CompressResult:
    """Every installed prior and a set-trained decoder; keep the better.

    Better is the lower median Chamfer distance of the decoded shapes; when a prior archive is
    within :data:`PRIOR_TOLERANCE` of the set-trained one it is kept, since it is the smaller.
    The choice and both numbers are in the result's ``notes``.

    Args:
        loaded: The meshes (at least one).
        output: The archive path.
        cfg: Validated settings of the set-trained decoder (the priors take its device and coder).
        fit: How shapes are fitted against each prior (default :class:`PriorFitConfig`).
        progress: Stage callback.
        cancel: Polled at every fitting iteration and training step; True stops with Cancelled.
        checkpoint_dir: Training checkpoints of the set's decoder.
    """
    out = Path(output)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        best = None
        for info in list_priors():
            candidate = find_prior(info["file"])
            path = Path(tmp) / f"prior-{candidate.id}.ncgs"
            result = compress_with_prior(loaded, path, candidate, fit, cfg, progress, cancel)
            score = decoded_cd(path, loaded.meshes, candidate)
            if best is None or score < best[0]:
                best = (score, result, path)
        own_path = Path(tmp) / "set.ncgs"
        own = compress_set_trained(
            loaded, own_path, cfg, progress=progress, cancel=cancel, checkpoint_dir=checkpoint_dir
        )
        own_score = decoded_cd(own_path, loaded.meshes)
        if best is not None and best[0] <= PRIOR_TOLERANCE * own_score:
            score, chosen, path = best
            why = f"picked prior {chosen.prior['name']!r}: median CD {score:.3e} vs {own_score:.3e} set-trained"
        else:
            score, chosen, path = own_score, own, own_path
            why = "picked a set-trained decoder: " + (
                f"median CD {own_score:.3e} vs {best[0]:.3e} with prior {best[1].prior['name']!r}"
                if best is not None
                else "no prior is installed"
            )
        shutil.move(str(path), out)
    chosen.path = out
    chosen.notes = [why] + [n for n in chosen.notes if "fits these shapes badly" not in n]
    return chosen


def decoded_cd(archive: str | os.PathLike, meshes: Sequence[Mesh], prior: Prior | None = None) -> float:
    """Median Chamfer distance of an archive's decoded shapes to ``meshes`` (same order)."""
    decoded = decompress(archive, prior=prior, device="cpu")
    return float(np.median([compare_meshes(d, m, 20_000).cd for d, m in zip(decoded, meshes)]))
