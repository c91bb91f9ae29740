"""``necgs evaluate DATA --codecs necgs,draco,... -o results/``: the RD sweep in one run."""

from __future__ import annotations

from necgs.commands._common import warn
from necgs.errors import ConfigError
from necgs.settings import parse_width


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="rate-distortion sweep of several codecs on one data set")
    p.add_argument("dataset", help="data set name (see `necgs datasets`), folder or zip")
    p.add_argument(
        "--codecs",
        default="necgs,draco,decimate-draco",
        help="comma-separated: necgs, draco, decimate-draco, pointcloud-spsr, quantdeepsdf, gpcc (G-PCC octree), "
        "gpcc-trisoup, vpcc, pcgcv2; `necgs codecs` says which run here and why the others do not",
    )
    p.add_argument("--widths", help="NeCGS decoder sizes to sweep, comma-separated (e.g. tiny,small,16)")
    p.add_argument(
        "--lambda-rates",
        help="NeCGS lambda_R values to sweep beside the widths, comma-separated "
        "(e.g. 0,0.02,0.05): every width is run at every lambda_R",
    )
    p.add_argument("--preset", default="quick", help="NeCGS preset (quick|standard|paper)")
    p.add_argument("--epochs", type=int, help="NeCGS training epochs")
    p.add_argument("--samples", type=int, default=100_000, help="surface samples per metric")
    p.add_argument("--limit", type=int, help="use only the first N shapes")
    p.add_argument("-o", "--output", required=True, help="results folder")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.baselines.base import codec_names
    from necgs.evaluation.report import write_results
    from necgs.evaluation.runner import evaluate
    from necgs.evaluation.runs import RunStore, run_record

    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    unknown = [c for c in codecs if c not in codec_names()]
    if unknown:
        raise ConfigError(f"unknown codec(s) {', '.join(unknown)}; known: {', '.join(codec_names())}")
    if not 100 <= args.samples <= 10_000_000:
        raise ConfigError(f"--samples must be in [100, 1e7], got {args.samples}")
    settings = {}
    if "necgs" in codecs:
        widths = [parse_width(w) for w in args.widths.split(",")] if args.widths else ["medium", "small", "tiny"]
        lambdas = _parse_lambdas(args.lambda_rates)
        settings["necgs"] = [
            {
                "preset": args.preset,
                "width": w,
                **({"epochs": args.epochs} if args.epochs else {}),
                **({"lambda_rate": lam} if lam is not None else {}),
            }
            for w in widths
            for lam in lambdas
        ]
    result = evaluate(
        args.dataset,
        codecs,
        settings=settings or None,
        n_samples=args.samples,
        limit=args.limit,
        progress=lambda stage, frac: warn(f"[{100 * frac:5.1f}%] {stage}"),
    )
    for codec, status in result.statuses.items():
        if status != "ok":
            warn(f"{codec}: {status}")
    out = write_results(result, args.output)
    shapes = int(result.summary.n_shapes.iloc[0])
    config = run_record(
        result.dataset, codecs, settings.get("necgs", []), shapes, limit=args.limit, samples=args.samples
    )
    run = RunStore().create(result, config)
    cols = ["codec", "label", "status", "bytes", "ratio_ply", "cd", "f1_005", "encode_s", "decode_ms_per_shape"]
    print(result.summary[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"results written to {out}; stored as run {run} (the app's past runs)")
    return 0


def _parse_lambdas(text: str | None) -> list[float | None]:
    """``--lambda-rates`` as floats (``[None]``: the preset's lambda_R only)."""

    if not text:
        return [None]
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--lambda-rates must be comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 <= v <= 1000 for v in values):
        raise ConfigError(f"--lambda-rates must be numbers in [0, 1000], got {text!r}")
    return values
