"""Rate-distortion benchmark (the paper's Fig. 4 at CPU scale): NeCGS widths beside
Draco and decimation + Draco, on the same shapes, in one run, with the metric floor.

Usage: python benchmarks/bench_rd.py humans_ama --preset standard --widths 6 8 10 12 [--epochs 40] [--tied-modules 4]
    [--resolution 128]
Writes benchmarks/results/rd_<set>_<preset><tag>/ (summary.csv, per_shape.csv, results.json,
rd_*.html) and rd_<set>_<preset><tag>.json; render_png.py turns the figures into PNGs.
"""

from __future__ import annotations

import argparse

from necgs.settings import parse_width

from _common import run_rd


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("--preset", default="quick")
    p.add_argument("--widths", nargs="+", default=["tiny", "small", "medium"])
    p.add_argument("--epochs", type=int)
    p.add_argument("--shapes", type=int, help="use this many evenly spaced shapes (default: all)")
    p.add_argument("--codecs", default="necgs,draco,decimate-draco")
    p.add_argument("--bits", type=int, help="quantization bits of weights and features (default: the preset's)")
    p.add_argument("--feature-bits", type=int, help="quantization bits of the features (default: --bits)")
    p.add_argument("--tied-modules", type=int, help="tie the decoder's first N upsampling modules (issue #30)")
    p.add_argument("--resolution", type=int, help="volume resolution K (default: the preset's)")
    p.add_argument("--tag", default="", help="suffix of the results folder")
    args = p.parse_args()
    extra = {"epochs": args.epochs} if args.epochs else {}
    if args.bits:
        extra |= {"weight_bits": args.bits, "feature_bits": args.bits}
    if args.feature_bits:
        extra |= {"feature_bits": args.feature_bits}
    if args.tied_modules:
        extra |= {"tied_modules": args.tied_modules}
    if args.resolution:
        extra |= {"resolution": args.resolution}
    settings = [{"preset": args.preset, "width": parse_width(w), **extra} for w in args.widths]
    run_rd(
        args.dataset,
        args.codecs.split(","),
        settings,
        f"rd_{args.dataset.replace('/', '_')}_{args.preset}{args.tag}",
        shapes=args.shapes,
        args=vars(args),
    )


if __name__ == "__main__":
    main()
