"""``necgs datasets``: the data sets necgs can see, with their mesh counts."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("datasets", help="list built-in and real data sets")
    p.set_defaults(func=run)


def run(args) -> int:
    # imported when the command runs: keeps torch and trimesh off `necgs --help`
    from necgs.io.datasets import list_datasets

    rows = list_datasets()
    print(f"{'name':16s}{'kind':9s}{'meshes':>7s}  description")
    for d in rows:
        print(f"{d.name:16s}{d.kind:9s}{d.count:7d}  {d.description}")
    return 0
