"""One mesh (or a few) through the command line as a user runs it: compress against a prior, then decompress.

Each command runs in its own process from a cold fitting cache, so the seconds include Python's
and torch's imports, the volume fitting, the feature fitting (and fine-tuning) and the decode.
The decoded mesh is scored against the original, beside the CD the same shape has in a
set-trained archive (``--set-cd``), for issue #16's single-mesh target (within 1.5x, at most 10 s).

A folder with ``--shapes N`` compresses N of its meshes (evenly spaced in name order, the
shapes ``bench_prior.py`` takes) as one set, for issue #16's set target (at most 60 s).

Usage:
    python benchmarks/bench_single.py ../shared/data/humans_ama/samba/mesh_0032.ply --prior bodies \
        --fine-tune 200 --set-cd 3.964e-3 --tag samba_0032
    python benchmarks/bench_single.py ../shared/data/humans_ama/samba --shapes 16 --fine-tune 0 \
        --tag samba16_set

Writes benchmarks/results/single_<tag>.json. Run it on an idle machine: the threads are torch's
default (both cores here) unless ``--threads`` is given.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from necgs.io.loading import load_mesh
from necgs.io.ply import binary_ply_bytes
from necgs.metrics import compare_meshes

from _common import spread, write_json


def timed(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; its wall seconds and the CPU seconds it used (user + system, children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "stdout": done.stdout.strip().splitlines()[-3:]}


def pick(source: Path, shapes: int | None) -> list[Path]:
    """``source`` itself, or ``shapes`` of the folder's meshes spread evenly in name order."""
    if source.is_file():
        return [source]
    files = sorted(f for f in source.iterdir() if f.suffix.lower() in {".ply", ".obj", ".off", ".stl"})
    if not files:
        raise SystemExit(f"{source}: no mesh files")
    return [files[i] for i in spread(len(files), min(shapes or len(files), len(files)))]


def run_once(meshes: list[Path], originals: list, args, env: dict) -> dict:
    """One cold compress + decompress of ``meshes`` (one file, or a folder of links), scored against
    their loaded ``originals``; seconds, bytes, CD."""
    necgs = [sys.executable, "-m", "necgs"]
    with tempfile.TemporaryDirectory(prefix="bench-single-") as tmp:
        env = {**env, "NECGS_CACHE_DIR": str(Path(tmp) / "cache")}
        source = meshes[0]
        if len(meshes) > 1:
            source = Path(tmp) / "set"
            source.mkdir()
            for m in meshes:
                (source / m.name).symlink_to(m.resolve())
        archive = Path(tmp) / "one.ncgs"
        compress_cmd = [*necgs, "compress", str(source), "-o", str(archive), "--prior", args.prior]
        if args.fine_tune:
            compress_cmd += ["--fine-tune", str(args.fine_tune)]
        comp = timed(compress_cmd, env)
        dec = timed([*necgs, "decompress", str(archive), "-o", str(Path(tmp) / "out")], env)
        decoded = {f.stem: load_mesh(f) for f in (Path(tmp) / "out").rglob("*") if f.is_file()}
        size = archive.stat().st_size
    scores = [compare_meshes(decoded[m.stem], o, args.samples) for m, o in zip(meshes, originals)]
    cd = sum(x.cd for x in scores) / len(scores)
    return {
        "shapes": len(meshes),
        "compress_wall_s": comp["wall_s"],
        "compress_cpu_s": comp["cpu_s"],
        "decompress_wall_s": dec["wall_s"],
        "decompress_cpu_s": dec["cpu_s"],
        "total_wall_s": comp["wall_s"] + dec["wall_s"],
        "bytes": size,
        "ratio_ply": sum(binary_ply_bytes(o) for o in originals) / size,
        "cd": cd,
        "f1_005": sum(x.f1_005 for x in scores) / len(scores),
        "cd_vs_set_trained": cd / args.set_cd if args.set_cd else None,
        "compress_output": comp["stdout"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mesh", type=Path, help="a mesh file, or a folder (with --shapes)")
    p.add_argument("--shapes", type=int, help="with a folder: this many of its meshes, as one set")
    p.add_argument("--prior", default="bodies")
    p.add_argument("--fine-tune", type=int, default=200, help="fine-tuning steps (0: features only)")
    p.add_argument("--set-cd", type=float, help="the shape's CD in a set-trained archive")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the commands (default: torch's)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--tag", default="single")
    args = p.parse_args()
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    meshes = pick(args.mesh, args.shapes)
    originals = [load_mesh(m) for m in meshes]
    runs = [run_once(meshes, originals, args, env) for _ in range(args.repeats)]
    for r in runs:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items() if k != "compress_output"})
    best = min(runs, key=lambda r: r["total_wall_s"])
    load = os.getloadavg()
    write_json(
        f"single_{args.tag}",
        {"args": {k: str(v) for k, v in vars(args).items()}, "load_average": load, "runs": runs, "best": best},
    )


if __name__ == "__main__":
    main()
