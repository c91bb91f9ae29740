"""``necgs compress DIR -o set.ncgs --preset quick|standard|paper``."""

from __future__ import annotations

from necgs.commands._common import warn
from necgs.errors import ConfigError
from necgs.settings import add_flags, args_setting, read_setting


def register(sub) -> None:
    p = sub.add_parser("compress", help="compress a set of meshes into one .ncgs archive")
    p.add_argument("source", help="folder (recursive), zip, or mesh file")
    p.add_argument("-o", "--output", required=True, help="archive to write (.ncgs)")
    add_flags(p)
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
    add_launch_flags(p)
    p.set_defaults(func=run)


def add_launch_flags(p) -> None:
    """The run's launch flags: processes on this machine and, for several machines, torchrun's multi-node launch."""
    launch = p.add_argument_group(
        "distributed", "torchrun's engine with DDP; on M machines run the same command with --node-rank 0 .. M-1"
    )
    launch.add_argument(
        "--nproc", type=int, default=1, help="processes on this machine (torchrun's --nproc_per_node; default 1)"
    )
    launch.add_argument(
        "--nnodes", type=int, default=1, help="machines in the run, each running this command (default 1)"
    )
    launch.add_argument(
        "--node-rank",
        type=int,
        default=0,
        help="this machine's rank, 0 to nnodes-1; node 0 hosts the rendezvous and writes the archive",
    )
    launch.add_argument(
        "--rdzv-endpoint", metavar="HOST:PORT", help="node 0's address and a free port, reachable from every node"
    )
    launch.add_argument(
        "--rdzv-id", default="necgs", help="the run's name at the rendezvous, the same on every node (default necgs)"
    )
    launch.add_argument(
        "--rdzv-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long a node waits for the others to join, or for a silent one, before it stops (default 300)",
    )


def run(args) -> int:
    setting = read_setting(args_setting(args))
    cfg = setting.config
    targets = {"target_ratio": args.target_ratio, "target_bytes": args.target_bytes}
    distributed = args.nproc > 1 or args.nnodes > 1
    if setting.prior and distributed:
        raise ConfigError("--prior fits features only; it runs in one process (drop --nproc and --nnodes)")
    if distributed and any(v is not None for v in targets.values()):
        # imported when the command runs: keeps torch and trimesh off `necgs --help`
        from necgs.compression.steps import as_loaded
        from necgs.target_rate import plan_rate

        plan = plan_rate(cfg, as_loaded(args.source).meshes, **targets)
        print(plan.describe())
        cfg = plan.config
    if distributed:
        return run_distributed(args, cfg)
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.compression import compress

    result = compress(args.source, args.output, cfg, **targets, prior=setting.prior, prior_fit=setting.prior_fit)
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


def run_distributed(args, cfg) -> int:
    """This machine's part of a distributed compression; the node that wrote the archive checks it."""
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.compression import open_archive, shapes_without_surface
    from necgs.distributed import Nodes, launch_compress

    nodes = Nodes(args.nnodes, args.node_rank, args.rdzv_endpoint, args.rdzv_id, args.rdzv_timeout)
    if launch_compress(args.source, args.output, cfg, args.nproc, nodes=nodes):
        with open_archive(args.output) as arc:
            total = len(arc.shapes)
        warn_empty(args.output, shapes_without_surface(args.output, device=cfg.train.device), total)
    else:
        print(f"node {args.node_rank}: done; node 0 wrote {args.output}")
    return 0


def warn_empty(path, empty: list[str], total: int) -> None:
    """One stderr line if shapes of the archive at ``path`` decode to no surface."""
    if empty:
        shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
        warn(
            f"{path}: {len(empty)} of {total} shapes decode to no surface ({shown}); training collapsed or "
            f"is too short: try more --epochs, a smaller --width or --preset quick"
        )
