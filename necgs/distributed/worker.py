"""What every process of a distributed compression runs (``python -m necgs.distributed``, started by
:mod:`necgs.distributed.launcher` through torchrun's engine).

Process ``local`` of node ``node`` is rank ``node * nproc + local`` (whatever order torch's
rendezvous let the nodes in), so the shapes a rank owns and its checkpoint's name are the same
on every launch of the same command. Each rank loads the set, fits and keeps only the volumes
of its round-robin share of the shapes (i % world == rank), and trains their features against
the shared decoder (:func:`necgs.training.train.train_shard`); rank 0 (process 0 of node 0)
gathers the features and writes the archive, atomically. A rank that fails leaves one line in
the launcher's error folder, no traceback: ``error: ...`` for a user's mistake, ``lost: ...``
when another rank vanished under it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from necgs.coding.codec_archive import shape_record
from necgs.compression.set_trained import write_trained
from necgs.compression.steps import as_loaded
from necgs.config import NecgsConfig
from necgs.distributed.roll import first_line
from necgs.errors import NecgsError
from necgs.geometry.fit import fit_volumes, grid_transform
from necgs.training.train import train_shard

#: Exit status of a rank that failed on a user's mistake (its line starts with "error: ").
USER_ERROR = 2
#: Exit status of a rank whose peers vanished (its line starts with "lost: ").
LOST = 3


@dataclass(frozen=True)
class Place:
    """Where this process stands: its node, its place on the node and the rank they make.

    Attributes:
        node: The node rank the launcher was given.
        local: This process's place on its node (torchrun's LOCAL_RANK).
        nproc: Processes per node.
        world: Processes in all.
    """

    node: int
    local: int
    nproc: int
    world: int

    @property
    def rank(self) -> int:
        """node * nproc + local: the same on every launch of the same command."""
        return self.node * self.nproc + self.local

    @classmethod
    def from_env(cls, node: int) -> Place:
        """This process's place from torchrun's variables and the node rank the launcher passed."""
        place = cls(
            node, int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"]), int(os.environ["WORLD_SIZE"])
        )
        if place.world % place.nproc or not place.rank < place.world:
            raise NecgsError(
                f"node {node} runs {place.nproc} of {place.world} processes: give every node the same --nproc"
            )
        return place


def compress_shard(source: str, output: str, cfg: NecgsConfig, place: Place, checkpoint_dir: Path | None) -> None:
    """Fit this rank's shapes, train them with the others, and (rank 0) write the archive.

    Args:
        source: The set, as every node sees it (each loads all of it, names and order included).
        output: The archive; only rank 0 writes it.
        cfg: Validated settings.
        place: This process's place.
        checkpoint_dir: This node's checkpoint folder (each rank writes its own files there).
    """
    rank, world = place.rank, place.world
    loaded = as_loaded(source)
    n = len(loaded.meshes)
    if n == 0:
        raise NecgsError(f"{source}: no usable mesh")
    if n < world:
        raise NecgsError(f"{world} processes need at least {world} shapes, {source} has {n}: run at most {n} in all")
    mine = fit_volumes(loaded.meshes, cfg.fit, progress=rank == 0, rank=rank, world_size=world)
    codec = train_shard(
        mine.volumes,
        cfg.decoder(),
        cfg.train,
        checkpoint_dir=checkpoint_dir,
        progress=rank == 0,
        autoencoder=cfg.autoencoder,
        deform=cfg.deform,
    )
    if codec is not None:
        transforms = [grid_transform(m, cfg.fit) for m in loaded.meshes]
        shapes = [shape_record(m, t, b, 0) for m, t, b in zip(loaded.meshes, transforms, loaded.source_bytes)]
        size = write_trained(output, cfg, codec, shapes)
        nodes = world // place.nproc
        resumed = f", resumed from epoch {codec.resumed_from}" if codec.resumed_from else ""
        print(f"{output}: {n} shapes, {size} bytes ({world} processes on {nodes} node{'s' * (nodes > 1)}{resumed})")
    dist.barrier()


def _watch_parent() -> None:
    """Exit when the launcher that started this process is gone (killed with its machine's job), so a
    dead node's workers never linger and its peers see it go at once."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(LOST)

    threading.Thread(target=watch, name="necgs-parent-watch", daemon=True).start()


def _fail(errors: Path | None, rank: int, line: str) -> None:
    if errors is not None:
        (errors / f"rank{rank}.txt").write_text(line + "\n")
    else:
        print(f"necgs.distributed: rank {rank}: {line}", file=sys.stderr)


def main(argv=None) -> int:
    """Entry point of ``python -m necgs.distributed`` (started by torchrun's engine)."""
    p = argparse.ArgumentParser(prog="necgs.distributed")
    p.add_argument("source")
    p.add_argument("output")
    p.add_argument("--config", required=True, help="JSON of a NecgsConfig (as stored in archives)")
    p.add_argument("--node-rank", type=int, default=None, help="this node's rank (default: torchrun's GROUP_RANK)")
    p.add_argument("--checkpoint-dir", help="this node's checkpoint folder; a relaunch resumes from it")
    p.add_argument("--errors", help="folder where a failing rank leaves its one line (default: stderr)")
    args = p.parse_args(argv)
    _watch_parent()
    errors = Path(args.errors) if args.errors else None
    node = args.node_rank if args.node_rank is not None else int(os.environ["GROUP_RANK"])
    rank = node * int(os.environ["LOCAL_WORLD_SIZE"]) + int(os.environ["LOCAL_RANK"])
    if errors is not None:
        (errors / f"rank{rank}.pid").write_text(str(os.getpid()))  # the launcher stops its workers by these
    try:
        cfg = NecgsConfig.from_dict(json.loads(Path(args.config).read_text())).validate()
        place = Place.from_env(node)
        cuda = torch.cuda.is_available() and cfg.train.device != "cpu"
        if cuda:
            if torch.cuda.device_count() < place.nproc:
                raise NecgsError(
                    f"{place.nproc} processes on {torch.cuda.device_count()} GPU(s): nccl needs a GPU per process; "
                    "give --nproc at most the GPU count, or --device cpu"
                )
            torch.cuda.set_device(place.local)
        dist.init_process_group("nccl" if cuda else "gloo", rank=place.rank, world_size=place.world)
        try:
            compress_shard(
                args.source, args.output, cfg, place, Path(args.checkpoint_dir) if args.checkpoint_dir else None
            )
        finally:
            dist.destroy_process_group()
    except NecgsError as exc:
        _fail(errors, rank, f"error: {exc}")
        return USER_ERROR
    except RuntimeError as exc:
        if not _peer_lost(exc):
            raise  # a bug keeps its traceback
        _fail(errors, rank, f"lost: {first_line(exc)}")
        return LOST
    return 0


#: What torch's transports say when a peer's process or machine is gone (gloo raises a plain RuntimeError).
PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "/gloo/transport/", "NCCL communicator")


def _peer_lost(exc: RuntimeError) -> bool:
    """The error says another rank (or the store) vanished, rather than a bug here."""
    return isinstance(exc, dist.DistError) or any(marker in str(exc) for marker in PEER_LOST)
