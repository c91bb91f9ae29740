"""The surface term's cost (issue #30): all blocks at once against the DMC run block by block.

A patch step draws 4 shapes x 16 blocks of 8^3 (the presets' budget). This takes such batches
from real fitted volumes (`standard`'s K = 64 fit of AMA bodies), perturbs them as a partly
trained decoder would (Gaussian noise on the TSDF and deformation channels), and times the
forward and backward pass of :func:`necgs.training.losses.surface_loss` (every block's edge
crossings at once) against the term as first built: the differentiable DMC of each block, one
at a time (written out here as the reference; ``tests/unit/test_losses.py`` checks that the
edge crossings are the DMC's vertices, gradient included). Eq. 3
(:func:`necgs.training.losses.volume_loss`) is timed beside them for scale. The median of the
repeats is reported.

Usage: python benchmarks/bench_surface_term.py [--shapes 8] [--noise 0.05 0.2] [--repeats 7]
Writes benchmarks/results/surface_term.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from necgs.geometry.dmc import deformable_marching_cubes, volume_offsets
from necgs.geometry.fit import fit_volumes
from necgs.settings import preset
from necgs.training.losses import LossWeights, surface_loss, volume_loss
from necgs.training.patches import BlockSampler, block_targets

from _common import evenly_spaced, write_json


def dmc_surface_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The surface term block by block through the DMC (the reference)."""
    voxels = (pred.shape[-1] - 1) / 2.0
    terms = []
    for p, t in zip(pred, target):
        ref, _ = deformable_marching_cubes(t[0], volume_offsets(t))
        got, _ = deformable_marching_cubes(p[0], volume_offsets(p))
        if len(ref) and len(got):
            dist = torch.cdist(got * voxels, ref * voxels)
            terms.append(dist.min(1).values.mean() + dist.min(0).values.mean())
    return torch.stack(terms).mean()


def seconds(term, pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Forward + backward seconds of one term, and its value."""
    x = pred.detach().clone().requires_grad_()
    t = time.perf_counter()
    loss = term(x, target)
    loss.backward()
    return time.perf_counter() - t, float(loss.detach())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="humans_ama")
    p.add_argument("--shapes", type=int, default=8)
    p.add_argument("--noise", type=float, nargs="+", default=[0.05, 0.2])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    loaded = evenly_spaced(args.dataset, args.shapes)
    volumes = fit_volumes(loaded.meshes, preset("standard").fit, progress=False).volumes
    tcfg = preset("standard").train
    sampler = BlockSampler(volumes, tcfg.block_size, 1, tcfg.tau)
    terms = {
        "all_blocks_at_once": surface_loss,
        "dmc_block_by_block": dmc_surface_loss,
        "eq3_volume_loss": lambda x, t: volume_loss(x, t, LossWeights(tcfg.lambda1, tcfg.lambda2, tcfg.tau)),
    }
    g = torch.Generator().manual_seed(0)
    rows = []
    for noise in args.noise:
        times: dict[str, list[float]] = {name: [] for name in terms}
        values: dict[str, list[float]] = {name: [] for name in terms}
        for r in range(args.repeats + 1):
            shapes = torch.randperm(args.shapes, generator=g)[: tcfg.batch_size].tolist()
            blocks = sampler.sample(shapes, tcfg.blocks_per_shape, tcfg.band_fraction, 0, g)
            target = block_targets(volumes, shapes, blocks)
            pred = target + noise * torch.randn(target.shape, generator=g)
            for name, term in terms.items():
                s, v = seconds(term, pred, target)
                if r:  # the first round warms up allocators
                    times[name].append(s)
                    values[name].append(v)
        row = {"noise": noise, "blocks": tcfg.batch_size * tcfg.blocks_per_shape, "block_size": tcfg.block_size}
        row |= {f"{name}_s": statistics.median(times[name]) for name in terms}
        row["largest_value_difference"] = max(
            abs(a - b) for a, b in zip(values["all_blocks_at_once"], values["dmc_block_by_block"])
        )
        row["speedup"] = row["dmc_block_by_block_s"] / row["all_blocks_at_once_s"]
        rows.append(row)
        print(row, flush=True)
    write_json("surface_term", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
