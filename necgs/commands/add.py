"""``necgs add set.ncgs NEW_DIR -o grown.ncgs``: new shapes against the frozen decoder."""

from __future__ import annotations

from necgs.commands._common import warn


def register(sub) -> None:
    p = sub.add_parser("add", help="add shapes to an archive without retraining its decoder")
    p.add_argument("archive")
    p.add_argument("source", help="folder, zip or mesh file with the new shapes")
    p.add_argument("-o", "--output", required=True, help="the grown archive")
    p.add_argument("--epochs", type=int, help="feature-fitting epochs (default: the archive's)")
    p.add_argument("--prior", help="the prior of an archive compressed against one (default: the installed one)")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.compression import add_shapes, describe

    result = add_shapes(args.archive, args.source, args.output, epochs=args.epochs, prior=args.prior)
    for failure in result.failures:
        warn(f"skipped {failure}")
    d = describe(result.path)
    added = [s for s in d["shapes"] if s["batch"] == d["batches"][-1]["batch"]]
    print(
        f"{result.path}: mode frozen-decoder (old shapes unchanged), added {len(added)} shapes at "
        f"{sum(s['feature_bytes'] for s in added) / max(len(added), 1):.0f} bytes each; {result.bytes} bytes in all"
    )
    return 0
