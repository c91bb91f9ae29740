"""Table 3 of the paper at CPU scale: volume resolution K = 32 / 64 / 128, with the time
each stage takes and the quality and size it gives, on a few evenly spaced shapes.

Usage: python benchmarks/bench_resolution.py [--dataset humans_ama] [--shapes 4] [--epochs 100]
    [--preset standard --tag _patch]
Writes benchmarks/results/table3_resolution<tag>.{json,csv}. The fitting cache is bypassed
(a fresh cache folder), so the fit seconds are real.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from necgs import compress, decompress, preset
from necgs.metrics import compare_meshes, mean_metrics, rate_report, sampling_floor

from _common import RESULTS, evenly_spaced, write_json


def measure(loaded, K: int, args, work: Path) -> dict:
    """Compress, decode and score the shapes at resolution K."""
    cfg = preset(args.preset, width=args.width, epochs=args.epochs, resolution=K, device="cpu")
    archive = work / f"K{K}.ncgs"
    result = compress(loaded, archive, cfg, checkpoint_dir=work / f"ckpt{K}")
    t = time.perf_counter()
    decoded = decompress(archive, device="cpu")
    decode_ms = 1000 * (time.perf_counter() - t) / len(decoded)
    metrics = mean_metrics([compare_meshes(r, g, args.samples) for r, g in zip(decoded, loaded.meshes)])
    rate = rate_report(result.bytes, sum(loaded.source_bytes), loaded.meshes)
    n = len(loaded.meshes)
    return {
        "K": K,
        "modules": cfg.decoder().modules,
        "widths": list(cfg.decoder().widths),
        "shapes": n,
        "epochs": cfg.train.epochs,
        "bytes": result.bytes,
        "ratio_ply": rate.ratio_ply,
        "fit_s_per_shape": result.seconds["fit"] / n,
        "train_s": result.seconds["train"],
        "decode_ms_per_shape": decode_ms,
        **metrics.to_dict(),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="humans_ama")
    p.add_argument("--shapes", type=int, default=4)
    p.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--preset", default="quick")
    p.add_argument("--width", default="small")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--tag", default="", help="suffix of the result files (table3_resolution<tag>.*)")
    args = p.parse_args()
    loaded = evenly_spaced(args.dataset, args.shapes)
    floor = mean_metrics([sampling_floor(m, args.samples) for m in loaded.meshes])
    rows = []
    with tempfile.TemporaryDirectory(prefix="necgs-table3-") as tmp:
        os.environ["NECGS_CACHE_DIR"] = tmp  # cold fitting cache: the fit time is measured
        for K in args.resolutions:
            rows.append(measure(loaded, K, args, Path(tmp)))
            print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    table = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / f"table3_resolution{args.tag}.csv", index=False)
    write_json(
        f"table3_resolution{args.tag}",
        {"args": vars(args), "shapes": [m.name for m in loaded.meshes], "floor": floor.to_dict(), "rows": rows},
    )
    print(table.to_string(index=False))
    print(
        "floor",
        {k: round(float(v), 5) for k, v in floor.to_dict().items()},
        "mean ratio",
        float(np.mean(table.ratio_ply)),
    )


if __name__ == "__main__":
    main()
