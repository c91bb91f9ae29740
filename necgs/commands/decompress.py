"""``necgs decompress set.ncgs -o OUT [--shape NAME] [--format ply]``."""

from __future__ import annotations

from necgs.commands._common import add_device


def register(sub) -> None:
    p = sub.add_parser("decompress", help="decode meshes from a .ncgs archive")
    p.add_argument("archive")
    p.add_argument("-o", "--output", required=True, help="folder for the decoded meshes")
    p.add_argument("--shape", action="append", help="decode only this shape (repeatable)")
    p.add_argument("--format", default="ply", choices=("ply", "obj", "off", "stl", "glb"))
    p.add_argument("--prior", help="the prior of an archive compressed against one (default: the installed one)")
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.compression import decompress

    meshes = decompress(
        args.archive, args.output, shapes=args.shape, fmt=args.format, device=args.device, prior=args.prior
    )
    print(f"{len(meshes)} meshes written to {args.output}")
    return 0
