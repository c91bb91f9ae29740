"""``necgs fit DIR -o VOLUMES_DIR --resolution K``: the regular-representation stage alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from necgs.commands._common import add_device, warn
from necgs.config import FitConfig


def register(sub) -> None:
    p = sub.add_parser("fit", help="fit TSDF-Def volumes (one .npy per shape + index.json)")
    p.add_argument("source")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--backend", default="points", choices=("points", "none", "nvdiffrast"))
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from necgs.geometry.fit import fit_volumes
    from necgs.io.loading import load_meshes

    cfg = FitConfig(
        resolution=args.resolution, iterations=args.iterations, backend=args.backend, device=args.device
    ).validate()
    loaded = load_meshes(args.source)
    for failure in loaded.failures:
        warn(f"skipped {failure}")
    fitted = fit_volumes(loaded.meshes, cfg)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for i, (name, volume, transform) in enumerate(zip(fitted.names, fitted.volumes, fitted.transforms)):
        fname = f"{i:05d}.npy"
        np.save(out / fname, volume.numpy(), allow_pickle=False)
        index.append({"name": name, "file": fname, "transform": transform.to_dict(), "seconds": fitted.seconds[i]})
    (out / "index.json").write_text(json.dumps({"config": cfg.__dict__, "volumes": index}, indent=1))
    print(f"{len(index)} volumes ({cfg.resolution}^3 x 4) written to {out}")
    return 0
