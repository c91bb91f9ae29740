"""Decode cost per shape and decoder width (the codec issue's target: at most 100 ms at K = 64).

A decode is the decoder's forward pass on one embedded feature plus Deformable Marching Cubes on the
result. The forward pass costs the same whatever the weights, so it is timed on a decoder of each
width as built; DMC is timed on the fitted volumes of real shapes (the surfaces a trained decoder
reproduces), since its cost grows with the surface. ``bench_speed.py`` times whole decompressions of
a trained archive.

With ``--trained-steps N`` each width is first trained for N steps on the shapes (so the
surface, and so the block-sparse decoder's work, is a real one) and every shape is decoded
densely and block-sparsely (`necgs.model.blocks.decode_sparse`, blocks of K/8), DMC included,
as `decompress` does; ``--resolution`` overrides the preset's K (the issue's K = 128 target).

Usage: python benchmarks/bench_decode.py [--dataset humans_ama] [--shapes 8] [--preset standard]
    [--widths 6 8 12 16] [--threads 2] [--resolution 128 --trained-steps 300] [--tag _2threads]
Writes benchmarks/results/decode_<preset>[_k<K>_trained]<tag>.json.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from necgs import preset
from necgs.geometry.dmc import mesh_from_volume
from necgs.geometry.fit import fit_volumes
from necgs.model.blocks import decode_sparse
from necgs.model.decoder import Decoder
from necgs.settings import parse_width
from necgs.training.train import train_autodecoder

from _common import evenly_spaced, write_json


def time_ms(fn, repeats: int) -> float:
    """Mean wall milliseconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    return wall_and_cpu_ms(fn, repeats)[0]


def wall_and_cpu_ms(fn, repeats: int) -> tuple[float, float]:
    """Mean wall and process-CPU milliseconds of ``fn()`` over ``repeats`` calls, after a warm-up.

    With one thread the CPU time is what the call costs on an idle core: it does not count the
    time other jobs on a shared machine hold the core.
    """
    fn()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - t) / repeats, 1000 * (time.process_time() - c) / repeats


def _tied(args) -> dict:
    """The ``tied_modules`` override, if ``--tied-modules`` was given (default: the preset's)."""
    return {} if args.tied_modules is None else {"tied_modules": args.tied_modules}


def trained_rows(args, cfg, volumes) -> list[dict]:
    """Per width: train ``--trained-steps`` steps, then time dense and sparse decodes with DMC."""
    rows = []
    K = cfg.fit.resolution
    for w in args.widths:
        dcfg = preset(args.preset, width=parse_width(w), resolution=K, **_tied(args)).decoder()
        per_epoch = -(-len(volumes) // cfg.train.batch_size)
        tcfg = replace(cfg.train, epochs=max(args.trained_steps // per_epoch, 1), checkpoint_every=0)
        torch.manual_seed(0)
        trained = train_autodecoder(volumes, dcfg, tcfg, progress=False)
        decoder = trained.decoder("cpu").eval()
        dense, sparse = [], []
        for i in range(len(volumes)):
            features = trained.features.value()[i : i + 1]
            with torch.no_grad():
                dense.append(wall_and_cpu_ms(lambda d=decoder, f=features: mesh_from_volume(d(f)[0]), 3))
                sparse.append(
                    wall_and_cpu_ms(lambda d=decoder, f=features: mesh_from_volume(decode_sparse(d, f, K // 8)[0]), 3)
                )
        rows.append(
            {
                "width": w,
                "K": K,
                "parameters": decoder.param_count(),
                "tied_modules": dcfg.tied_modules,
                "trained_steps": tcfg.epochs * per_epoch,
                "threads": args.threads,
                "dense_decode_ms_per_shape": sum(t[0] for t in dense) / len(dense),
                "sparse_decode_ms_per_shape": sum(t[0] for t in sparse) / len(sparse),
                "dense_decode_cpu_ms_per_shape": sum(t[1] for t in dense) / len(dense),
                "sparse_decode_cpu_ms_per_shape": sum(t[1] for t in sparse) / len(sparse),
                "target_ms": 100,
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="humans_ama")
    p.add_argument("--shapes", type=int, default=8)
    p.add_argument("--preset", default="standard")
    p.add_argument("--widths", nargs="+", default=["6", "8", "12", "16"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resolution", type=int, help="K (default: the preset's)")
    p.add_argument("--trained-steps", type=int, default=0, help="train each width first; time dense and sparse")
    p.add_argument("--tied-modules", type=int, help="tied upsampling modules (default: the preset's; 0: untied)")
    p.add_argument("--tag", default="", help="suffix of the results file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = preset(args.preset, device="cpu", resolution=args.resolution)
    volumes = fit_volumes(evenly_spaced(args.dataset, args.shapes).meshes, cfg.fit, progress=False).volumes.dense()
    if args.trained_steps:
        rows = trained_rows(args, cfg, volumes)
        name = f"decode_{args.preset}_k{cfg.fit.resolution}_trained{args.tag}"
        print(write_json(name, {"args": vars(args), "K": cfg.fit.resolution, "rows": rows}))
        return
    dmc_ms = [time_ms(lambda v=v: mesh_from_volume(v), 3) for v in volumes]
    rows = []
    for w in args.widths:
        dcfg = preset(args.preset, width=parse_width(w), **_tied(args)).decoder()
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
    print(write_json(f"decode_{args.preset}{args.tag}", {"args": vars(args), "K": cfg.fit.resolution, "rows": rows}))


if __name__ == "__main__":
    main()
