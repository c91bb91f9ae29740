"""The cost curve (issue #32): fitting, training, memory, bytes, decoding and CD for N = 100 to 1,000 shapes.

Shapes: ``--distinct`` meshes spread over the shared real sets (AMA bodies, Sumner animals, Thingi10K
parts), fitted with the ``quick`` preset at K into a private cache (the fitting measured once per K),
then every fitted volume's exact mirror image and quarter turns (``geometry/symmetry.py``, 8 copies,
derived as block volumes, not fitted), as ``bench_volume_memory.prepare`` writes them. A row of N
shapes takes the copies in the order originals, mirror images, first turns, ... so every distinct
mesh is in every row; beyond 8 x distinct the copies repeat (each in its own file).

Each row (K, N) is a real compression, each stage in a fresh process whose peak resident set
(``VmHWM``) is its row's memory:

1. compress: the copies' block volumes mapped from their files into a ``VolumeSet``, the meshes of
   the copies (the originals moved as their volumes were) in memory as ``compress`` holds them,
   ``quick``'s patch training for a fixed step budget (``--steps``: the epochs that come nearest,
   at least one), the features and decoder entropy-coded into a ``.ncgs`` archive by the writer
   ``compress`` uses. The empty-shape repair of one-process ``compress`` is not run (as in the
   multi-node path): empty shapes are counted instead (``bench_repair.py`` runs it on a finished row).
2. decode: every shape decoded from the archive alone (seconds per shape), then CD, NC and F1 of
   each against its copy's mesh (``--samples`` points per surface; empty decodes counted, CD over
   the others, F1 of an empty one 0).

Seconds are wall-clock, each beside the process's CPU seconds (all its threads): on the shared cores
the wall time stretches with the other jobs' load, the CPU time much less.

Rows go to benchmarks/results/scaling.json as each finishes; a row already there is skipped
unless ``--redo``, and a stage already done (its JSON in the work folder) is not run again, so an
interrupted run resumes (training from its last epoch's checkpoint). The figure
scaling.html plots seconds and memory against N.

Usage: python benchmarks/bench_scaling.py [--rows 64:100 64:300 128:100 128:300 128:1000 64:1000]
    [--steps 250] [--distinct 38] [--samples 20000] [--work ~/.cache/necgs_bench/scaling] [--tag ""] [--redo]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from bench_volume_memory import SETS, PeakSampler, _status_kb, prepare

from necgs.coding.codec_archive import shape_record
from necgs.compression.decode import decode_shape, open_archive
from necgs.compression.set_trained import write_trained
from necgs.geometry.block_volume import BlockVolume, VolumeSet
from necgs.geometry.dmc import mesh_from_volume
from necgs.geometry.fit import grid_transform
from necgs.geometry.symmetry import augment_volumes, copy_mesh
from necgs.metrics import compare_meshes
from necgs.settings import preset
from necgs.training.train import train_autodecoder

from _common import RESULTS, evenly_spaced, machine

ROWS = ("64:100", "64:300", "128:100", "128:300", "128:1000", "64:1000")
COPIES = 8  # augment_volumes(..., "turns")


def copy_order(files: int, distinct: int) -> list[int]:
    """The volume files of ``bench_volume_memory.prepare`` (file j holds copy j % 8 of distinct mesh
    (j % 8d) // 8, repeating every 8d files) in the order rows take them: each round of 8d copies
    as originals, mirror images, first turns, ..., so a row of N >= d holds every distinct mesh."""
    block = COPIES * distinct
    return sorted(range(files), key=lambda j: (j // block, j % COPIES, (j % block) // COPIES))


def copy_of(j: int, distinct: int) -> tuple[int, int, int]:
    """File j's (distinct mesh, copy, repeat)."""
    block = COPIES * distinct
    return (j % block) // COPIES, j % COPIES, j // block


def copy_meshes(meshes, picks: list[int], distinct: int, fit_cfg):
    """The mesh of every picked copy (the original moved as its volume was), its transform and source bytes."""
    K = fit_cfg.resolution
    suffixes = augment_volumes(torch.zeros((0, 4, K, K, K)), "turns")[1]
    transforms = [grid_transform(m, fit_cfg) for m in meshes]
    out = []
    for j in picks:
        m, c, r = copy_of(j, distinct)
        moved = copy_mesh(meshes[m], transforms[m], suffixes[c])
        if r:
            moved = replace(moved, name=f"{moved.name}/again{r}")
        out.append((moved, transforms[m]))
    return out


def distinct_meshes(distinct: int):
    """The meshes ``bench_volume_memory.prepare`` fits, in its order (with their source bytes)."""
    per_set = [distinct // len(SETS) + (i < distinct % len(SETS)) for i in range(len(SETS))]
    loaded = [evenly_spaced(name, k) for name, k in zip(SETS, per_set)]
    return [m for s in loaded for m in s.meshes], [b for s in loaded for b in s.source_bytes]


def steps_plan(n: int, steps: int, batch: int) -> tuple[int, int]:
    """(epochs, steps) of a run of about ``steps`` steps over ``n`` shapes, at least one epoch."""
    per_epoch = max(math.ceil(n / batch), 1)
    epochs = max(1, round(steps / per_epoch))
    return epochs, epochs * per_epoch


def _row_files(folder: Path, n: int, distinct: int) -> list[int]:
    files = len(list(folder.glob("*.ncgv")))
    if files < n:
        raise SystemExit(f"{folder}: {files} volume files, the row needs {n}")
    return copy_order(files, distinct)[:n]


def compress_stage(folder: Path, row_dir: Path, n: int, K: int, args) -> dict:
    """Stage 1 in this (fresh) process: train on the copies' block volumes and write the archive."""
    torch.set_num_threads(args.threads)
    sampler = PeakSampler()
    cfg = preset("quick", device="cpu", resolution=K)
    picks = _row_files(folder, n, args.distinct)
    t = time.perf_counter()
    meshes, source_bytes = distinct_meshes(args.distinct)
    copies = copy_meshes(meshes, picks, args.distinct, cfg.fit)
    volumes = VolumeSet([BlockVolume.open(folder / f"{j:05d}.ncgv") for j in picks], K)
    load_seconds = time.perf_counter() - t
    epochs, steps = steps_plan(n, args.steps, cfg.train.batch_size)
    cfg = replace(cfg, train=replace(cfg.train, epochs=epochs, checkpoint_every=1))
    ticks: list[tuple[float, float]] = []

    def tick() -> bool:  # asked before every training step: its start, wall and CPU time
        ticks.append((time.perf_counter(), time.process_time()))
        return False

    start = time.perf_counter()
    codec = train_autodecoder(
        volumes, cfg.decoder(), cfg.train, checkpoint_dir=row_dir / "checkpoints", progress=False, cancel=tick
    )
    end, end_cpu = time.perf_counter(), time.process_time()
    t = end
    records = [
        shape_record(mesh, transform, source_bytes[copy_of(j, args.distinct)[0]], batch=0)
        for (mesh, transform), j in zip(copies, picks)
    ]
    size = write_trained(row_dir / "archive.ncgs", cfg, codec, records)
    code_seconds = time.perf_counter() - t
    peaks = sampler.stop()
    run = len(ticks)
    return {
        "epochs": epochs,
        "steps": steps,
        "steps_run": run,
        "resumed_from_epoch": codec.resumed_from,
        "load_seconds": load_seconds,
        "setup_seconds": (ticks[0][0] - start) if ticks else None,
        "train_seconds": end - start,
        "seconds_per_step": (end - ticks[0][0]) / run if run else None,
        "cpu_seconds_per_step": (end_cpu - ticks[0][1]) / run if run else None,
        "code_seconds": code_seconds,
        "final_loss": codec.losses[-1],
        "archive_bytes": size,
        "band_blocks": volumes.blocks,
        "block_mb": volumes.nbytes / 2**20,
        "compress_peak_rss_mb": _status_kb("VmHWM:") / 1024,
        "compress_peak_anon_mb": peaks["peak_anon_mb"],
        "compress_peak_file_mb": peaks["peak_file_mb"],
    }


def decode_stage(folder: Path, row_dir: Path, n: int, K: int, args) -> dict:
    """Stage 2 in this (fresh) process: decode every shape from the archive, then compare each with its copy."""
    torch.set_num_threads(args.threads)
    sampler = PeakSampler()
    fit_cfg = preset("quick", device="cpu", resolution=K).fit
    picks = _row_files(folder, n, args.distinct)
    copies = copy_meshes(distinct_meshes(args.distinct)[0], picks, args.distinct, fit_cfg)
    device = torch.device("cpu")
    seconds, metrics, empty = [], [], []
    metric_seconds, cpu = 0.0, 0.0
    with open_archive(row_dir / "archive.ncgs") as arc:
        if len(arc.shapes) != n:
            raise SystemExit(f"{row_dir / 'archive.ncgs'} holds {len(arc.shapes)} shapes, the row {n}")
        decoder = arc.decoder(device)
        for i in range(n):  # every shape, from the archive alone; compared, then dropped
            t, c = time.perf_counter(), time.process_time()
            with torch.no_grad():
                mesh = decode_shape(arc, decoder, i, device, sparse=True)
            seconds.append(time.perf_counter() - t)
            cpu += time.process_time() - c
            if mesh.n_faces == 0:
                empty.append(mesh.name)
            t = time.perf_counter()
            metrics.append(compare_meshes(mesh, copies[i][0], n_samples=args.samples))
            metric_seconds += time.perf_counter() - t
    cds = np.array([m.cd for m in metrics if math.isfinite(m.cd)])
    t = time.perf_counter()
    fitted = [  # the floor: each distinct copy's fitted volume itself against its mesh
        compare_meshes(
            mesh_from_volume(BlockVolume.open(folder / f"{j:05d}.ncgv").dense()).transformed(transform, inverse=True),
            gt,
            n_samples=args.samples,
        )
        for j, (gt, transform) in zip(picks, copies)
        if copy_of(j, args.distinct)[2] == 0
    ]
    peaks = sampler.stop()
    return {
        "decoded": len(seconds),
        "empty_shapes": len(empty),
        "empty_names": empty[:20],
        "decode_seconds_per_shape": float(np.mean(seconds)),
        "decode_seconds_max": float(np.max(seconds)),
        "decode_cpu_seconds_per_shape": cpu / n,
        "decode_peak_rss_mb": _status_kb("VmHWM:") / 1024,
        "decode_peak_anon_mb": peaks["peak_anon_mb"],
        "metric_samples": args.samples,
        "metric_seconds": metric_seconds,
        "cd_mean": float(cds.mean()) if len(cds) else None,
        "cd_median": float(np.median(cds)) if len(cds) else None,
        "nc_mean": float(np.mean([m.nc for m in metrics])),
        "f1_005_mean": float(np.mean([m.f1_005 for m in metrics])),
        "f1_01_mean": float(np.mean([m.f1_01 for m in metrics])),
        "fitted_cd_mean": float(np.mean([m.cd for m in fitted])),
        "fitted_f1_005_mean": float(np.mean([m.f1_005 for m in fitted])),
        "fitted_seconds": time.perf_counter() - t,
    }


def run_stage(stage: str, folder: Path, row_dir: Path, n: int, K: int, args) -> dict:
    """A stage's result: read from the row's folder when done before, else run in a fresh process."""
    out = row_dir / f"{stage}.json"
    if out.is_file():
        return json.loads(out.read_text())
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]),
    }
    cmd = [sys.executable, __file__, "--distinct", str(args.distinct), "--steps", str(args.steps)]
    cmd += ["--samples", str(args.samples), "--threads", str(args.threads), "--work", str(args.work)]
    t = time.perf_counter()
    with open(row_dir / f"{stage}.log", "w") as log:  # not a pipe: the stage outlives a launcher that dies
        done = subprocess.run(
            [*cmd, "--child", stage, str(folder), str(row_dir), str(n), str(K)], env=env, stdout=log, stderr=log
        )
    if done.returncode or not out.is_file():
        sys.stderr.write((row_dir / f"{stage}.log").read_text()[-4000:])
        raise SystemExit(f"row K={K} N={n}: the {stage} stage failed (exit {done.returncode})")
    result = {**json.loads(out.read_text()), f"{stage}_wall_seconds": time.perf_counter() - t}
    out.write_text(json.dumps(result, indent=1))
    return result


def load_result(path: Path) -> dict:
    """The rows written so far (an empty result when there is none)."""
    return json.loads(path.read_text()) if path.is_file() else {"runs": [], "prepared": {}, "rows": []}


def save_result(result: dict, path: Path) -> None:
    """Write the result, rows sorted by (K, N)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result["rows"].sort(key=lambda r: (r["K"], r["N"]))
    path.write_text(json.dumps({**result, "machine": machine()}, indent=1, default=float))


def figure(rows: list[dict], path: Path) -> None:
    """Seconds (fitting per distinct shape, a training step, decoding per shape) and peak memory against N."""
    import plotly.graph_objects as go  # heavy: only for the figure
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("seconds", "peak resident memory (GB)"))
    series = [
        ("fit_seconds_per_shape", "fit / distinct shape", "dot"),
        ("seconds_per_step", "training step", "solid"),
        ("decode_seconds_per_shape", "decode / shape", "dash"),
    ]
    for K, colour in ((64, "#1f77b4"), (128, "#d62728")):
        mine = sorted((r for r in rows if r["K"] == K), key=lambda r: r["N"])
        if not mine:
            continue
        x = [r["N"] for r in mine]
        for key, label, dash in series:
            y = [r.get(key) for r in mine]
            fig.add_trace(
                go.Scatter(x=x, y=y, name=f"K={K} {label}", line={"color": colour, "dash": dash}), row=1, col=1
            )
        for key, label, dash in (
            ("compress_peak_rss_mb", "compress", "solid"),
            ("decode_peak_rss_mb", "decode", "dash"),
        ):
            y = [r[key] / 1024 for r in mine]
            fig.add_trace(
                go.Scatter(x=x, y=y, name=f"K={K} {label} peak", line={"color": colour, "dash": dash}), row=1, col=2
            )
    fig.add_hline(y=12, line={"color": "grey", "dash": "dot"}, annotation_text="target 12 GB", row=1, col=2)
    fig.update_xaxes(type="log", title="shapes N")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(template="plotly_white", title="The cost curve (bench_scaling.py, 2 shared CPU cores)")
    fig.write_html(path, include_plotlyjs="cdn")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", default=list(ROWS), help="K:N pairs, run in this order")
    p.add_argument("--steps", type=int, default=250, help="training steps per row (the nearest whole epochs, >= 1)")
    p.add_argument("--distinct", type=int, default=38, help="meshes fitted at each K; the rest are their copies")
    p.add_argument("--samples", type=int, default=20_000, help="points per surface for CD / NC / F1")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each stage")
    p.add_argument("--work", default=str(Path.home() / ".cache" / "necgs_bench" / "scaling"))
    p.add_argument("--tag", default="", help="write scaling_TAG.json / .html (a trial run) instead")
    p.add_argument("--redo", action="store_true", help="run the given rows again (their stages too)")
    p.add_argument("--child", nargs=5, metavar=("STAGE", "FOLDER", "ROW_DIR", "N", "K"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        stage, folder, row_dir, n, K = args.child
        run = compress_stage if stage == "compress" else decode_stage
        out = Path(row_dir) / f"{stage}.json"
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(run(Path(folder), Path(row_dir), int(n), int(K), args), indent=1))
        tmp.replace(out)  # the stage is done even if its launcher died meanwhile
        return
    if args.distinct < len(SETS):
        p.error(f"--distinct must be at least {len(SETS)} (one mesh of each set), got {args.distinct}")
    rows = [tuple(int(x) for x in r.split(":")) for r in args.rows]
    name = "scaling" + (f"_{args.tag}" if args.tag else "")
    path = RESULTS / f"{name}.json"
    result = load_result(path)
    result["runs"].append({k: v for k, v in vars(args).items() if k != "child"})
    for K, n in rows:
        if not args.redo and any(r["K"] == K and r["N"] == n for r in result["rows"]):
            print(f"K={K} N={n}: in {path.name}, skipped", flush=True)
            continue
        files = max([m for k, m in rows if k == K] + [COPIES * args.distinct])
        folder = prepare(
            Namespace(
                resolution=K, shapes=[files], distinct=args.distinct, arms=["blocks"], dense_max=0, work=args.work
            )
        )
        meta = json.loads((folder / "done.json").read_text())
        result["prepared"].setdefault(f"K{K}", meta)  # the first preparation is the one that fitted
        row_dir = Path(args.work) / (f"K{K}_N{n}" + (f"_{args.tag}" if args.tag else ""))
        if args.redo and row_dir.exists():
            shutil.rmtree(row_dir)
        row_dir.mkdir(parents=True, exist_ok=True)
        print(f"K={K} N={n}: compress ...", flush=True)
        compressed = run_stage("compress", folder, row_dir, n, K, args)
        print(f"K={K} N={n}: {compressed}", flush=True)
        decoded = run_stage("decode", folder, row_dir, n, K, args)
        fit = result["prepared"][f"K{K}"]
        row = {
            "K": K,
            "N": n,
            "distinct": args.distinct,
            "fit_seconds_per_shape": fit["fit_seconds"] / fit["distinct"],
            "fit_cpu_seconds_per_shape": fit["fit_cpu_seconds"] / fit["distinct"] if "fit_cpu_seconds" in fit else None,
            "copies": "derived from the fitted volumes (symmetry.py), not fitted",
            **compressed,
            **decoded,
            "archive_bytes_per_shape": compressed["archive_bytes"] / n,
        }
        result["rows"] = [r for r in result["rows"] if (r["K"], r["N"]) != (K, n)] + [row]
        save_result(result, path)
        figure(result["rows"], RESULTS / f"{name}.html")
        print(f"K={K} N={n}: {row}", flush=True)
    save_result(result, path)


if __name__ == "__main__":
    main()
