"""Rate-distortion benchmark (the paper's Fig. 4 at CPU scale): NeCGS widths beside
Draco and decimation + Draco, on the same shapes, in one run, with the metric floor.

Usage: python benchmarks/bench_rd.py humans_ama --preset quick --widths tiny small medium
Writes benchmarks/results/rd_<set>_<preset>/ (summary.csv, per_shape.csv, results.json, rd_*.html)
and a PNG of the CD curve for the README when kaleido is available.
"""

from __future__ import annotations

import argparse
import time

from _common import RESULTS, write_json
from necgs.commands._common import parse_width
from necgs.evaluation import ResultsStore, evaluate, write_results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("--preset", default="quick")
    p.add_argument("--widths", nargs="+", default=["tiny", "small", "medium"])
    p.add_argument("--epochs", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--codecs", default="necgs,draco,decimate-draco")
    p.add_argument("--tag", default="", help="suffix of the results folder")
    args = p.parse_args()
    codecs = args.codecs.split(",")
    settings = {"necgs": [{"preset": args.preset, "width": parse_width(w), **({"epochs": args.epochs} if args.epochs else {})}
                          for w in args.widths]}
    t = time.time()
    result = evaluate(args.dataset, codecs, settings=settings, limit=args.limit,
                      progress=lambda stage, frac: print(f"[{100 * frac:5.1f}%] {time.time() - t:7.0f}s {stage}", flush=True))
    out = write_results(result, RESULTS / f"rd_{args.dataset}_{args.preset}{args.tag}")
    ResultsStore().add_run(result, {"benchmark": "bench_rd", **vars(args)})
    write_json(f"rd_{args.dataset}_{args.preset}{args.tag}", {"args": vars(args), "wall_seconds": time.time() - t,
                                                     "summary": result.summary.to_dict("records")})
    cols = ["codec", "label", "bytes", "ratio_ply", "ratio_files", "cd", "nc", "f1_005", "f1_01", "encode_s", "decode_ms_per_shape"]
    print(result.summary[cols].to_string(index=False))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
