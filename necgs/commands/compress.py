"""``necgs compress DIR -o set.ncgs --preset quick|standard|paper``."""

from __future__ import annotations

import argparse

from necgs.commands._common import add_device, parse_width, warn


def register(sub) -> None:
    p = sub.add_parser("compress", help="compress a set of meshes into one .ncgs archive")
    p.add_argument("source", help="folder (recursive), zip, or mesh file")
    p.add_argument("-o", "--output", required=True, help="archive to write (.ncgs)")
    p.add_argument(
        "--preset", default="quick", help="quick (K=64, minutes), standard (K=64, 3x the training) or paper (K=128)"
    )
    p.add_argument("--width", help="decoder size: tiny|small|medium|large|xl|paper, a base width, or w0,w1,...")
    p.add_argument("--epochs", type=int, help="training epochs (overrides the preset)")
    p.add_argument(
        "--ssim",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="switch the SSIM term of the loss (the Fig. 8b ablation; default: the preset's, on)",
    )
    p.add_argument("--no-deform", action="store_true", help="ablation: plain TSDF volumes, no deformation")
    p.add_argument("--autoencoder", action="store_true", help="ablation: features from a volume encoder (Fig. 8a)")
    p.add_argument("--resolution", type=int, help="volume resolution K, a power of two (overrides the preset)")
    p.add_argument("--weight-bits", type=int, help="quantization bits of the decoder parameters (2..16)")
    p.add_argument("--feature-bits", type=int, help="quantization bits of the embedded features (2..16)")
    p.add_argument(
        "--train-mode",
        choices=["patch", "dense"],
        help="patch: train on blocks near the surface (default); dense: whole volumes (the paper's)",
    )
    p.add_argument(
        "--lambda-rate",
        type=float,
        help="lambda_R: weight of the rate term in training (default 0; e.g. 0.02 for smaller archives); "
        "with --prior and --fine-tune, the weight of the fine-tuned delta's rate term",
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--target-ratio",
        type=float,
        metavar="R",
        help="rate control: aim at R times smaller than the meshes as binary PLY (picks width, bits, lambda_R)",
    )
    target.add_argument(
        "--target-bytes", type=int, metavar="B", help="rate control: aim at an archive of at most B bytes"
    )
    p.add_argument(
        "--prior",
        help="compress against a pretrained decoder: a name (necgs prior list), a .ncgp path, or auto "
        "(the better of the installed priors and a set-trained decoder)",
    )
    p.add_argument(
        "--fine-tune",
        type=int,
        nargs="?",
        const=200,
        default=0,
        metavar="STEPS",
        help="with --prior: also fine-tune the prior's decoder (STEPS steps, default 200) and store the coded "
        "change (about 12 kB; one unseen body: CD 12e-3 -> 4e-3)",
    )
    p.add_argument(
        "--delta-step",
        type=int,
        metavar="M",
        help="with --fine-tune: the coded change's step in steps of the prior's grid (default 4; a set "
        "of 16 bodies: 16 gives 567x at CD 6.5e-3, 4 gives 238x at 5.4e-3)",
    )
    p.add_argument("--nproc", type=int, default=1, help="processes for distributed training (torchrun on this machine)")
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from necgs.config import preset

    cfg = preset(
        args.preset,
        width=parse_width(args.width),
        device=args.device,
        epochs=args.epochs,
        ssim=args.ssim,
        deform=False if args.no_deform else None,
        autoencoder=args.autoencoder or None,
        resolution=args.resolution,
        weight_bits=args.weight_bits,
        feature_bits=args.feature_bits,
        train_mode=args.train_mode,
        lambda_rate=args.lambda_rate,
    )
    targets = {"target_ratio": args.target_ratio, "target_bytes": args.target_bytes}
    if args.prior and args.nproc > 1:
        from necgs.errors import ConfigError

        raise ConfigError("--prior fits features only; it runs in one process (drop --nproc)")
    if args.nproc > 1 and any(v is not None for v in targets.values()):
        from necgs.compression.steps import as_loaded
        from necgs.target_rate import plan_rate

        plan = plan_rate(cfg, as_loaded(args.source).meshes, **targets)
        print(plan.describe())
        cfg = plan.config
    if args.nproc > 1:
        from necgs.compression import open_archive, shapes_without_surface
        from necgs.distributed import launch_compress

        code = launch_compress(args.source, args.output, cfg, args.nproc)
        if code == 0:
            with open_archive(args.output) as arc:
                total = len(arc.shapes)
            warn_empty(args.output, shapes_without_surface(args.output, device=args.device), total)
        return code
    from necgs.compression import compress
    from necgs.errors import ConfigError
    from necgs.priors.fit_config import PriorFitConfig

    prior_fit = None
    if args.delta_step is not None and not args.fine_tune:
        raise ConfigError("--delta-step sets the step of a fine-tuned delta: give --fine-tune too")
    if args.prior and args.prior != "auto" and args.lambda_rate is not None and not args.fine_tune:
        raise ConfigError("--lambda-rate with --prior weighs a fine-tuned delta's rate: give --fine-tune too")
    if args.fine_tune:
        if not args.prior or args.prior == "auto":
            raise ConfigError("--fine-tune fine-tunes a named prior's decoder: give --prior NAME|PATH")
        prior_fit = PriorFitConfig(
            fine_tune_steps=args.fine_tune,
            delta_multiple=PriorFitConfig.delta_multiple if args.delta_step is None else args.delta_step,
            fine_tune_lambda_rate=(
                PriorFitConfig.fine_tune_lambda_rate if args.lambda_rate is None else args.lambda_rate
            ),
        )
    result = compress(args.source, args.output, cfg, **targets, prior=args.prior, prior_fit=prior_fit)
    for failure in result.failures:
        warn(f"skipped {failure}")
    for note in result.notes:
        print(note)
    if result.prior:
        print(f"uses prior {result.prior['name']!r} (id {result.prior['id']}); decompress finds it by id")
    if result.rate_plan is not None:
        print(result.rate_plan.describe())
    print(
        f"{result.path}: {len(result.names)} shapes, {result.bytes} bytes, ratio {result.ratio_ply:.1f} to binary PLY "
        f"(fit {result.seconds['fit']:.0f} s, train {result.seconds['train']:.0f} s)"
    )
    warn_empty(result.path, result.empty_shapes, len(result.names))
    return 0


def warn_empty(path, empty: list[str], total: int) -> None:
    """One stderr line if shapes of the archive at ``path`` decode to no surface."""
    if empty:
        shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
        warn(
            f"{path}: {len(empty)} of {total} shapes decode to no surface ({shown}); training collapsed or "
            f"is too short: try more --epochs, a smaller --width or --preset quick"
        )
