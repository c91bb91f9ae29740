"""Cost model: how training time per epoch and memory grow with the number of shapes N
and the resolution K. Measures N = 8, 16, 32, 64 at K = 32 (and N = 8 at K = 64),
fits time = a + b N, and writes benchmarks/results/scaling.json.

Usage: python benchmarks/bench_scaling.py
"""

from __future__ import annotations

import resource
import time

import numpy as np
import torch

from necgs.config import TrainConfig
from necgs.model.decoder import decoder_config
from necgs.training.train import train_autodecoder

from _common import write_json


def measure(n: int, K: int, epochs: int = 3) -> dict:
    g = torch.linspace(-1, 1, K)
    grid = torch.stack(torch.meshgrid(g, g, g, indexing="ij"))
    vols = []
    for i in range(n):
        r = 0.4 + 0.3 * (i / max(n - 1, 1))
        tsdf = ((grid.norm(dim=0) - r) / (4 / (K - 1))).clamp(-1, 1)
        vols.append(torch.cat([tsdf[None], torch.zeros(3, K, K, K)]))
    volumes = torch.stack(vols)
    t = time.perf_counter()
    train_autodecoder(
        volumes,
        decoder_config(K, "small", 8),
        TrainConfig(epochs=epochs, checkpoint_every=0, device="cpu"),
        progress=False,
    )
    sec = (time.perf_counter() - t) / epochs
    return {
        "N": n,
        "K": K,
        "seconds_per_epoch": sec,
        "seconds_per_shape_epoch": sec / n,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "volume_bytes": int(volumes.numel() * 4),
    }


def main() -> None:
    rows = [measure(n, 32) for n in (8, 16, 32, 64)] + [measure(8, 64, epochs=2)]
    k32 = [r for r in rows if r["K"] == 32]
    b, a = np.polyfit([r["N"] for r in k32], [r["seconds_per_epoch"] for r in k32], 1)
    model = {
        "seconds_per_epoch_K32": f"{a:.3f} + {b:.4f} * N",
        "K64_over_K32_per_shape": rows[-1]["seconds_per_shape_epoch"] / k32[0]["seconds_per_shape_epoch"],
        "memory": "volumes take N * 4 * K^3 * 4 bytes (K=64: 4 MiB per shape); activations grow with batch * K^3",
    }
    print(write_json("scaling", {"rows": rows, "model": model}))
    for r in rows:
        print(r)
    print(model)


if __name__ == "__main__":
    main()
