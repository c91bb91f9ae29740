"""Fitting only near the surface: time, peak memory and the fitted ceiling at K = 64 and 128.

For each shape: the TSDF with every node's distance queried (as before) and with the distance
queried near the surface only, then Algorithm 1's loop on every node (``dense``) and on the band
(``band``); the fitted volume's DMC mesh is scored against the original (1e5 samples, the metric
floor beside it). ``dense`` = full-query TSDF + dense loop (the fit as it was), ``band`` =
near-surface TSDF + band loop (the fit now). Dense fits run on the first ``--dense-k64`` shapes
of each set at K = 64 and on the first ``--dense-k128`` shapes of the run (AMA first) at K = 128,
which is slow; their volumes and seconds sit beside the band's of the same shapes.

Usage: MALLOC_MMAP_THRESHOLD_=131072 python benchmarks/bench_band_fit.py [--ama 4] [--animals 4]
    [--iterations 100] [--dense-k64 1] [--dense-k128 1] [--threads 1]
Writes benchmarks/results/band_fit.json. Peak memory is the process's peak resident set during
one fit (its mark reset before each, freed memory handed back first), less the resident set
before it; the fixed mmap threshold makes every large buffer go back to the system when freed.
"""

from __future__ import annotations

import argparse
import ctypes
import time

import numpy as np
import pandas as pd
import torch

from necgs.config import FitConfig
from necgs.geometry.dmc import Band, mesh_from_volume
from necgs.geometry.fit import band_margin, grid_transform, optimize_volume, points_error
from necgs.geometry.sdf import signed_distance
from necgs.geometry.tsdf import band_nodes, grid_points, tsdf_volume, voxel_size
from necgs.io.mesh import Mesh
from necgs.metrics import compare_meshes, sampling_floor

from _common import evenly_spaced, write_json


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def full_query_tsdf(vertices: np.ndarray, faces: np.ndarray, cfg: FitConfig) -> np.ndarray:
    """The TSDF as it was computed before: the signed distance queried at all K^3 nodes."""
    K, h = cfg.resolution, voxel_size(cfg.resolution)
    sdf = signed_distance(vertices, faces, grid_points(K), shell=0.5 * h, thin=cfg.thin_voxels * h, probe=h)
    return np.clip(sdf / (cfg.truncation_voxels * h), -1.0, 1.0).reshape(K, K, K).astype(np.float32)


def fit_once(mesh: Mesh, cfg: FitConfig, dense: bool) -> tuple[torch.Tensor, dict]:
    """One fit of ``mesh`` with its stage times, CPU seconds and peak memory."""
    v = grid_transform(mesh, cfg).apply(mesh.vertices)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _rss_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets the peak resident set to the current one
    cpu, wall = time.process_time(), time.perf_counter()
    if dense:
        tsdf0 = torch.from_numpy(full_query_tsdf(v, mesh.faces, cfg))
    else:
        tsdf0 = torch.from_numpy(tsdf_volume(v, mesh.faces, cfg.resolution, cfg.truncation_voxels, cfg.thin_voxels))
    tsdf_s = time.perf_counter() - wall
    device = torch.device("cpu")
    volume = optimize_volume(tsdf0, cfg, points_error(v, mesh.faces, cfg, device), device, dense=dense)
    row = {
        "tsdf_s": tsdf_s,
        "loop_s": time.perf_counter() - wall - tsdf_s,
        "seconds": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "peak_mb": _rss_mb("VmHWM") - before,
    }
    if not dense:
        band = Band.of(band_nodes(tsdf0, band_margin(cfg)))
        row["band_nodes"] = band.nodes.numel() / cfg.resolution**3
        row["band_cubes"] = len(band.corners) / (cfg.resolution - 1) ** 3
    return volume, row


def score(volume: torch.Tensor, mesh: Mesh, cfg: FitConfig) -> dict:
    fitted = mesh_from_volume(volume).transformed(grid_transform(mesh, cfg), inverse=True)
    return compare_meshes(fitted, mesh, 100_000).to_dict()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ama", type=int, default=4)
    p.add_argument("--animals", type=int, default=4)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--samples", type=int, default=20_000)
    p.add_argument("--dense-k64", type=int, default=1, help="shapes of each set also fitted densely at K = 64")
    p.add_argument("--dense-k128", type=int, default=1, help="shapes of the run also fitted densely at K = 128")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="band_fit")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    mesh_from_volume(torch.ones((4, 8, 8, 8)))  # builds the DMC table once, outside the timings
    corners = np.array([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5], [0, 0, 0]])
    tsdf_volume(corners, np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]]), 8)  # imports open3d, likewise
    rows, done = [], 0
    for dataset, n in (("humans_ama", args.ama), ("animals_sumner", args.animals)):
        for i, mesh in enumerate(evenly_spaced(dataset, n).meshes if n else []):
            floor = sampling_floor(mesh).cd
            for K, with_dense in ((64, i < args.dense_k64), (128, done < args.dense_k128)):
                cfg = FitConfig(resolution=K, iterations=args.iterations, samples=args.samples, device="cpu")
                band_volume = None
                for dense in (False, True) if with_dense else (False,):
                    volume, row = fit_once(mesh, cfg, dense)
                    mode = "dense" if dense else "band"
                    row = {"set": dataset, "shape": mesh.name, "K": K, "mode": mode, **row}
                    row.update(score(volume, mesh, cfg), floor_cd=floor)
                    if dense:  # beside the band's fit of the same shape
                        row["max_abs_diff_to_band"] = float((volume - band_volume).abs().max())
                        row["band_seconds"], row["band_peak_mb"] = rows[-1]["seconds"], rows[-1]["peak_mb"]
                    else:
                        band_volume = volume
                    rows.append(row)
                    print({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
            done += 1
    table = pd.DataFrame(rows)
    summary = (
        table.groupby(["set", "K", "mode"])
        .agg(
            shapes=("shape", "count"),
            cd=("cd", "mean"),
            f1_005=("f1_005", "mean"),
            floor_cd=("floor_cd", "mean"),
            seconds=("seconds", "mean"),
            tsdf_s=("tsdf_s", "mean"),
            loop_s=("loop_s", "mean"),
            cpu_s=("cpu_s", "mean"),
            peak_mb=("peak_mb", "mean"),
            band_nodes=("band_nodes", "mean"),
            band_seconds=("band_seconds", "mean"),
            band_peak_mb=("band_peak_mb", "mean"),
        )
        .reset_index()
    )
    print(summary.to_string(index=False))
    settings = {"iterations": args.iterations, "samples": args.samples, "threads": args.threads}
    path = write_json(args.name, {"settings": settings, "summary": summary.to_dict("records"), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
