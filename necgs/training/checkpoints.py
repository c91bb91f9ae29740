"""Training checkpoints: plain tensor dicts with a JSON sidecar, written atomically, found again by the run's digest.

A run in one process keeps its last checkpoint (``checkpoint.pt`` + ``checkpoint.json``). Each rank of
a distributed run keeps its last two (``checkpoint.rank{r}of{w}.epoch{e}.pt`` + ``.json``) on its own
node's disk: ranks of a killed run may have written different last epochs, and a relaunch resumes
from the latest epoch that every rank still has (:func:`necgs.training.sharding.agreed_epoch`). Ranks
step together (each step all-reduces the decoder's gradients), so no rank is ever more than one
checkpoint ahead of another and keeping two always leaves an epoch in common.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict
from pathlib import Path

import torch

from necgs.config import TrainConfig
from necgs.geometry.block_volume import Volumes, VolumeSet
from necgs.model.decoder import DecoderConfig


def run_digest(
    volumes: Volumes,
    dcfg: DecoderConfig,
    tcfg: TrainConfig,
    init: dict[str, torch.Tensor] | None = None,
    encoder: dict | None = None,
    deform: bool = True,
) -> str:
    """What a checkpoint must match to be resumed: the settings (not the device), the volumes and any init.

    Args:
        volumes: (N, 4, K, K, K) the volumes this process trains on (a rank's share under DDP), dense
            or as blocks: the digest is of the dense bytes, one shape at a time, so both give the same.
        dcfg: The decoder architecture.
        tcfg: The training settings.
        init: Decoder parameters training started from (fine-tuning a prior).
        encoder: The volume encoder's settings, when trained as an auto-encoder.
        deform: Whether the surface term places the surface with the deformation channels; it
            changes the loss only when that term is on, and only then enters the digest.
    """
    h = hashlib.sha256()
    settings = asdict(tcfg)
    settings.pop("device")
    if encoder is not None:  # an auto-encoder's checkpoint is never resumed as an auto-decoder's
        settings["encoder"] = encoder
    if not deform and tcfg.lambda_surface > 0:
        settings["deform"] = False
    h.update(json.dumps([dcfg.to_dict(), settings], sort_keys=True).encode())
    for volume in volumes if isinstance(volumes, VolumeSet) else (volumes,):
        h.update(volume.numpy().tobytes())
    for name in sorted(init or {}):
        h.update(name.encode() + init[name].detach().cpu().numpy().tobytes())
    return h.hexdigest()[:20]


def _stem(tag: str, epoch: int | None) -> str:
    return f"checkpoint{tag}" if epoch is None else f"checkpoint{tag}.epoch{epoch}"


def save_checkpoint(
    folder: Path,
    tag: str,
    digest: str,
    epoch: int,
    state: dict,
    losses: list[float],
    seconds: float = 0.0,
    keep: int = 1,
) -> None:
    """Write ``state`` (tensors only) and its sidecar atomically; the sidecar comes last, so it names a whole file.

    Args:
        folder: The checkpoint folder (created).
        tag: Names the process's files ("" in one process, ``.rank{r}of{w}`` for a rank).
        digest: :func:`run_digest` of the run.
        epoch: Epochs done.
        state: Plain tensors and dicts of tensors (read back with ``weights_only=True``).
        losses: Mean loss of each epoch so far.
        seconds: Training time so far, earlier runs included.
        keep: 1 keeps one file pair under a fixed name; 2 names files by epoch and keeps the last two.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = _stem(tag, None if keep == 1 else epoch)
    tmp = folder / f".{stem}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / f"{stem}.pt")
    meta = folder / f".{stem}.{os.getpid()}.json.tmp"
    meta.write_text(json.dumps({"digest": digest, "epoch": epoch, "losses": losses, "seconds": round(seconds, 3)}))
    os.replace(meta, folder / f"{stem}.json")
    if keep > 1:
        for old in sorted(_epoch_files(folder, tag))[:-keep]:
            (folder / f"{_stem(tag, old)}.json").unlink(missing_ok=True)  # the sidecar first: no pair is half-named
            (folder / f"{_stem(tag, old)}.pt").unlink(missing_ok=True)


def _epoch_files(folder: Path, tag: str) -> list[int]:
    pattern = re.compile(re.escape(f"checkpoint{tag}.epoch") + r"(\d+)\.json")
    return [int(m.group(1)) for p in folder.glob(f"checkpoint{tag}.epoch*.json") if (m := pattern.fullmatch(p.name))]


def _meta(folder: Path, stem: str, digest: str) -> dict | None:
    try:
        meta = json.loads((folder / f"{stem}.json").read_text())
        if meta.get("digest") != digest or not (folder / f"{stem}.pt").is_file():
            return None
        return meta
    except (OSError, ValueError):
        return None  # an unreadable sidecar means no checkpoint, never a crash


def saved_epochs(folder: Path | None, tag: str, digest: str, keep: int = 1) -> list[int]:
    """The epochs this process has a whole checkpoint of for the run ``digest``, oldest first."""
    if folder is None or not folder.is_dir():
        return []
    if keep == 1:
        meta = _meta(folder, _stem(tag, None), digest)
        return [int(meta["epoch"])] if meta is not None and "epoch" in meta else []
    return sorted(e for e in _epoch_files(folder, tag) if _meta(folder, _stem(tag, e), digest) is not None)


def load_checkpoint(
    folder: Path, tag: str, digest: str, epoch: int, keep: int = 1
) -> tuple[dict, list[float], float] | None:
    """The state, losses and seconds of the checkpoint at ``epoch`` (of :func:`saved_epochs`); None if unreadable."""
    stem = _stem(tag, None if keep == 1 else epoch)
    meta = _meta(folder, stem, digest)
    if meta is None or int(meta.get("epoch", -1)) != epoch:
        return None
    try:
        state = torch.load(folder / f"{stem}.pt", map_location="cpu", weights_only=True)
        return state, [float(x) for x in meta["losses"]], float(meta.get("seconds", 0.0))
    except (OSError, ValueError, RuntimeError, KeyError):
        return None  # an unreadable checkpoint means starting over, never a crash
