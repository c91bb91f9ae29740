"""Wall time of one training step: dense (whole volumes) against patch (a budget of blocks),
over the same shapes, at K = 64 and K = 128.

Forward + backward + optimizer step with quantization-aware training, as in
:func:`necgs.training.train.train_autodecoder`. The two modes alternate step by step, so a
machine shared with other work slows both alike; the median of the repeats is reported.
Volumes are plain TSDFs of real shapes (the fitting stage does not change a step's cost).

Usage: python benchmarks/bench_step.py [--resolutions 64 128] [--width 8] [--shapes 4]
Writes benchmarks/results/train_step.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from necgs.config import FitConfig, TrainConfig
from necgs.geometry.fit import fit_volumes
from necgs.model.decoder import Decoder, decoder_config
from necgs.model.quant import quantize, symmetric_spec
from necgs.training.train import StepObjective

from _common import evenly_spaced, write_json


def one_step(decoder, features, objective, idx, opt, tcfg, generator) -> float:
    """Seconds of one QAT step on the shapes ``idx``."""
    t = time.perf_counter()
    specs = decoder.quant_specs(tcfg.weight_bits, True)
    f = features[idx]
    loss = objective(decoder, quantize(f, symmetric_spec(features, tcfg.feature_bits, True)), specs, idx, generator)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t


def measure(volumes: torch.Tensor, width: int, tcfg: TrainConfig, repeats: int) -> dict:
    """Median step time of the dense and the patch objective on the same decoder and shapes."""
    K, n = volumes.shape[-1], volumes.shape[0]
    decoder = Decoder(decoder_config(K, width, feature_channels=8))
    features = torch.nn.Parameter(torch.randn(n, 8, 4, 4, 4) / 3)
    opt = torch.optim.Adam([*decoder.parameters(), features], lr=1e-4)
    objectives = {m: StepObjective(volumes, decoder.cfg, replace(tcfg, mode=m)) for m in ("dense", "patch")}
    times: dict[str, list[float]] = {"dense": [], "patch": []}
    g = torch.Generator().manual_seed(0)
    idx = list(range(n))
    for r in range(repeats + 1):
        for mode, objective in objectives.items():
            s = one_step(decoder, features, objective, idx, opt, tcfg, g)
            if r:  # the first round warms up allocators and kernels
                times[mode].append(s)
    dense, patch = statistics.median(times["dense"]), statistics.median(times["patch"])
    return {
        "K": K,
        "width": width,
        "shapes_per_step": n,
        "block_size": tcfg.block_size,
        "blocks_per_shape": tcfg.blocks_per_shape,
        "crop_level": objectives["patch"].crop_level,
        "band_share_of_block_positions": objectives["patch"].sampler.band_share(),
        "dense_step_s": dense,
        "patch_step_s": patch,
        "speedup": dense / patch,
        "repeats": repeats,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="humans_ama")
    p.add_argument("--resolutions", type=int, nargs="+", default=[64, 128])
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--shapes", type=int, default=4)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    loaded = evenly_spaced(args.dataset, args.shapes)
    tcfg = TrainConfig(
        batch_size=args.shapes, block_size=args.block_size, blocks_per_shape=args.blocks, device="cpu"
    ).validate()
    rows = []
    for K in args.resolutions:
        volumes = fit_volumes(loaded.meshes, FitConfig(resolution=K, backend="none"), progress=False).volumes.dense()
        rows.append(measure(volumes, args.width, tcfg, args.repeats))
        print(rows[-1], flush=True)
    write_json("train_step", {"args": vars(args), "threads": torch.get_num_threads(), "rows": rows})


if __name__ == "__main__":
    main()
