"""Table 2 of the paper at CPU scale: plain marching cubes on the TSDF vs DMC on the fitted TSDF-Def.

Usage: python benchmarks/bench_tsdf_def.py [--resolutions 32 64] [--per-set 16]
Writes benchmarks/results/table2_tsdf_vs_tsdfdef.{json,csv}.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import pandas as pd

from necgs.config import FitConfig
from necgs.geometry.dmc import mesh_from_volume
from necgs.geometry.fit import fitted_volume
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import load_meshes
from necgs.metrics import compare_meshes, sampling_floor

from _common import RESULTS, write_json

SETS = ("humans_ama", "animals_sumner", "cad_trimesh")


def pick(meshes, n):
    step = max(len(meshes) // n, 1)
    return meshes[::step][:n]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    p.add_argument("--per-set", type=int, default=16)
    p.add_argument("--iterations", type=int, default=100)
    args = p.parse_args()
    rows = []
    for name in SETS:
        meshes = pick(load_meshes(resolve_dataset(name)).meshes, args.per_set)
        for K in args.resolutions:
            fitted_cfg = FitConfig(resolution=K, iterations=args.iterations, device="cpu")
            plain_cfg = replace(fitted_cfg, backend="none")
            for mesh in meshes:
                floor = sampling_floor(mesh)
                for label, cfg in (("TSDF + MC", plain_cfg), ("TSDF-Def + DMC", fitted_cfg)):
                    t = time.perf_counter()
                    vol, tr, _ = fitted_volume(mesh, cfg, cache=False)
                    sec = time.perf_counter() - t
                    m = compare_meshes(
                        mesh_from_volume(vol, deform=cfg.backend != "none").transformed(tr, inverse=True), mesh
                    )
                    rows.append(
                        {
                            "set": name,
                            "K": K,
                            "representation": label,
                            "shape": mesh.name,
                            "seconds": sec,
                            **m.to_dict(),
                            "floor_cd": floor.cd,
                            "floor_f1_005": floor.f1_005,
                        }
                    )
                print(name, K, mesh.name, rows[-2]["cd"], rows[-1]["cd"], f"{rows[-1]['seconds']:.1f}s", flush=True)
    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS / "table2_per_shape.csv", index=False)
    table = (
        df.groupby(["set", "K", "representation"])
        .agg(
            shapes=("shape", "count"),
            cd=("cd", "mean"),
            nc=("nc", "mean"),
            f1_005=("f1_005", "mean"),
            f1_01=("f1_01", "mean"),
            seconds_per_shape=("seconds", "mean"),
            floor_cd=("floor_cd", "mean"),
            floor_f1_005=("floor_f1_005", "mean"),
        )
        .reset_index()
    )
    table.to_csv(RESULTS / "table2_tsdf_vs_tsdfdef.csv", index=False)
    checks = {}
    for (s, K), grp in table.groupby(["set", "K"]):
        plain = grp[grp.representation == "TSDF + MC"].iloc[0]
        fit = grp[grp.representation == "TSDF-Def + DMC"].iloc[0]
        checks[f"{s}@{K}"] = bool(fit.cd < plain.cd and fit.f1_005 > plain.f1_005)
    write_json(
        "table2_tsdf_vs_tsdfdef",
        {"iterations": args.iterations, "table": table.to_dict("records"), "tsdf_def_strictly_better": checks},
    )
    print(table.to_string())
    print(checks)


if __name__ == "__main__":
    main()
