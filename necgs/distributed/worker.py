"""Distributed compression on PyTorch's own engine: torchrun + DistributedDataParallel.

``necgs compress ... --nproc N`` starts N local processes through ``torch.distributed.run``
(torchrun); on several machines run the same worker with torchrun's rendezvous flags
(see docs/ARCHITECTURE.md). Each rank fits the TSDF-Def volumes of its round-robin share
of the shapes; the volumes are all-gathered as tensors; training shards the shapes (and
their features) across ranks while DDP averages the decoder gradients (gloo on CPU, nccl
on CUDA); rank 0 writes the archive.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from necgs.coding.codec_archive import shape_record
from necgs.compression.set_trained import write_trained
from necgs.compression.steps import as_loaded
from necgs.config import NecgsConfig
from necgs.errors import NecgsError
from necgs.geometry.fit import fit_volumes, grid_transform
from necgs.training.train import train_autodecoder


def launch_compress(source, output, cfg: NecgsConfig, nproc: int, *, checkpoint_dir: str | None = None) -> int:
    """Run a compression with ``nproc`` local processes through torchrun; returns the exit code."""
    if not 1 <= nproc <= 256:
        raise NecgsError(f"--nproc must be in [1, 256], got {nproc}")
    with tempfile.TemporaryDirectory(prefix="necgs-ddp-") as tmp:
        cfg_path = Path(tmp) / "config.json"
        cfg_path.write_text(json.dumps(cfg.to_dict()))
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "necgs.distributed",
            "--config",
            str(cfg_path),
            str(source),
            str(output),
        ]
        if checkpoint_dir:
            cmd += ["--checkpoint-dir", str(checkpoint_dir)]
        env = dict(
            os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // nproc)))
        )
        return subprocess.run(cmd, env=env).returncode


def _gather_volumes(local: torch.Tensor, n: int, rank: int, world: int) -> torch.Tensor:
    """All-gather round-robin shards (n_r, 4, K, K, K) into the full (n, 4, K, K, K) in shape order."""
    per = (n + world - 1) // world
    padded = torch.zeros((per, *local.shape[1:]), dtype=local.dtype)
    padded[: local.shape[0]] = local
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    full = torch.zeros((n, *local.shape[1:]), dtype=local.dtype)
    for r in range(world):
        idx = list(range(r, n, world))
        full[idx] = parts[r][: len(idx)]
    return full


def worker(source: str, output: str, cfg: NecgsConfig, checkpoint_dir: str | None) -> None:
    """The body every rank runs (under torchrun)."""
    backend = "nccl" if torch.cuda.is_available() and cfg.train.device != "cpu" else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        loaded = as_loaded(source)
        if not loaded.meshes:
            raise NecgsError(f"{source}: no usable mesh")
        mine = fit_volumes(loaded.meshes, cfg.fit, progress=rank == 0, rank=rank, world_size=world)
        volumes = _gather_volumes(mine.volumes, len(loaded.meshes), rank, world)
        ckpt = Path(checkpoint_dir) if checkpoint_dir else None
        codec = train_autodecoder(
            volumes, cfg.decoder(), cfg.train, checkpoint_dir=ckpt, progress=rank == 0, autoencoder=cfg.autoencoder
        )
        if rank == 0:
            transforms = [grid_transform(m, cfg.fit) for m in loaded.meshes]
            shapes = [shape_record(m, t, b, 0) for m, t, b in zip(loaded.meshes, transforms, loaded.source_bytes)]
            size = write_trained(output, cfg, codec, shapes)
            print(f"{output}: {len(shapes)} shapes, {size} bytes ({world} processes)")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main(argv=None) -> int:
    """Entry point of ``python -m necgs.distributed`` (started by torchrun)."""
    p = argparse.ArgumentParser(prog="necgs.distributed")
    p.add_argument("source")
    p.add_argument("output")
    p.add_argument("--config", required=True, help="JSON of a NecgsConfig (as stored in archives)")
    p.add_argument("--checkpoint-dir")
    args = p.parse_args(argv)
    cfg = NecgsConfig.from_dict(json.loads(Path(args.config).read_text())).validate()
    try:
        worker(args.source, args.output, cfg, args.checkpoint_dir)
    except NecgsError as exc:
        print(f"necgs.distributed: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
