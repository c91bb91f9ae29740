"""Decode cost per shape and decoder width (the codec issue's target: at most 100 ms at K = 64).

A decode is the decoder's forward pass on one embedded feature plus Deformable Marching Cubes on the
result. The forward pass costs the same whatever the weights, so it is timed on a decoder of each
width as built; DMC is timed on the fitted volumes of real shapes (the surfaces a trained decoder
reproduces), since its cost grows with the surface. ``bench_speed.py`` times whole decompressions of
a trained archive.

Usage: python benchmarks/bench_decode.py [--dataset humans_ama] [--shapes 8] [--preset standard]
    [--widths 6 8 12 16] [--threads 2]
Writes benchmarks/results/decode_<preset>.json.
"""

from __future__ import annotations

import argparse
import time

import torch

from necgs import preset
from necgs.commands._common import parse_width
from necgs.geometry.dmc import mesh_from_volume
from necgs.geometry.fit import fit_volumes
from necgs.model.decoder import Decoder

from _common import evenly_spaced, write_json


def time_ms(fn, repeats: int) -> float:
    """Mean wall milliseconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - t) / repeats


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="humans_ama")
    p.add_argument("--shapes", type=int, default=8)
    p.add_argument("--preset", default="standard")
    p.add_argument("--widths", nargs="+", default=["6", "8", "12", "16"])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = preset(args.preset, device="cpu")
    volumes = fit_volumes(evenly_spaced(args.dataset, args.shapes).meshes, cfg.fit, progress=False).volumes
    dmc_ms = [time_ms(lambda v=v: mesh_from_volume(v), 3) for v in volumes]
    rows = []
    for w in args.widths:
        dcfg = preset(args.preset, width=parse_width(w)).decoder()
        decoder = Decoder(dcfg).eval()
        feature = torch.randn(1, dcfg.feature_channels, *(dcfg.feature_resolution,) * 3)
        with torch.no_grad():
            forward = time_ms(lambda d=decoder, f=feature: d(f), 10)
        rows.append(
            {
                "width": w,
                "widths": list(dcfg.widths),
                "parameters": decoder.param_count(),
                "decoder_ms": forward,
                "dmc_ms": sum(dmc_ms) / len(dmc_ms),
                "decode_ms_per_shape": forward + sum(dmc_ms) / len(dmc_ms),
                "target_ms": 100,
            }
        )
        print(rows[-1], flush=True)
    print(write_json(f"decode_{args.preset}", {"args": vars(args), "K": cfg.fit.resolution, "rows": rows}))


if __name__ == "__main__":
    main()
