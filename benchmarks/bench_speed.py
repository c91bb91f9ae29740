"""Speed targets of the codec issue: the ``quick`` preset on 16 shapes from a cold cache
(target: at most 3 minutes on 2 CPU cores, fitting included) and decoding per shape.

Usage: python benchmarks/bench_speed.py [--dataset humans_ama] [--shapes 16] [--preset quick] [--width W]
    [--tied-modules N] [--epochs E] [--threads 2]
Writes benchmarks/results/speed_<preset>_<shapes>[_w<W>][_tied<N>][_e<E>].json. The K = 64 targets (88 shapes in 30 min,
decoding in 100 ms per shape): ``--preset standard --shapes 88 --width 6``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from necgs import compress, decompress, preset
from necgs.metrics import compare_meshes, mean_metrics, rate_report
from necgs.settings import parse_width

from _common import evenly_spaced, write_json

#: The codec issue's wall-time targets: quick on 16 shapes, standard (K = 64) on 88 shapes.
TARGET_SECONDS = {"quick": 180, "standard": 1800}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="humans_ama")
    p.add_argument("--shapes", type=int, default=16)
    p.add_argument("--preset", default="quick")
    p.add_argument("--width")
    p.add_argument("--tied-modules", type=int, help="tie the decoder's first N upsampling modules (issue #30)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the preset's)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = evenly_spaced(args.dataset, args.shapes)
    cfg = preset(
        args.preset, width=parse_width(args.width), tied_modules=args.tied_modules, epochs=args.epochs, device="cpu"
    )
    with tempfile.TemporaryDirectory(prefix="necgs-speed-") as tmp:
        os.environ["NECGS_CACHE_DIR"] = tmp  # cold cache: fitting is part of the measured time
        archive = Path(tmp) / "set.ncgs"
        t = time.perf_counter()
        result = compress(loaded, archive, cfg, checkpoint_dir=Path(tmp) / "ckpt")
        total = time.perf_counter() - t
        t = time.perf_counter()
        decoded = decompress(archive, device="cpu")
        decode_ms = 1000 * (time.perf_counter() - t) / len(decoded)
    metrics = mean_metrics([compare_meshes(r, g) for r, g in zip(decoded, loaded.meshes)])
    rate = rate_report(result.bytes, sum(loaded.source_bytes), loaded.meshes)
    payload = {
        "args": vars(args),
        "shapes": len(loaded.meshes),
        "K": cfg.fit.resolution,
        "epochs": cfg.train.epochs,
        "compress_seconds": total,
        "stage_seconds": result.seconds,
        "target_seconds": TARGET_SECONDS.get(args.preset),
        "decode_ms_per_shape": decode_ms,
        "bytes": result.bytes,
        "ratio_ply": rate.ratio_ply,
        **metrics.to_dict(),
    }
    name = f"speed_{args.preset}_{args.shapes}" + (f"_w{args.width}" if args.width else "")
    name += (f"_tied{args.tied_modules}" if args.tied_modules else "") + (f"_e{args.epochs}" if args.epochs else "")
    print(write_json(name, payload))
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in payload.items()})


if __name__ == "__main__":
    main()
