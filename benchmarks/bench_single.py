"""One mesh through the command line as a user runs it: compress against a prior, then decompress.

Each command runs in its own process from a cold fitting cache, so the seconds include Python's
and torch's imports, the volume fitting, the feature fitting (and fine-tuning) and the decode.
The decoded mesh is scored against the original, beside the CD the same shape has in a
set-trained archive (``--set-cd``), for issue #16's single-mesh target (within 1.5x, at most 10 s).

Usage:
    python benchmarks/bench_single.py ../shared/data/humans_ama/samba/mesh_0032.ply --prior bodies \
        --fine-tune 200 --set-cd 3.964e-3 --tag samba_0032

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
from necgs.metrics import compare_meshes
from necgs.rate import binary_ply_bytes

from _common import write_json


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


def run_once(mesh_path: Path, args, env: dict) -> dict:
    """One cold compress + decompress of ``mesh_path``; seconds, bytes and CD."""
    necgs = [sys.executable, "-m", "necgs"]
    with tempfile.TemporaryDirectory(prefix="bench-single-") as tmp:
        env = {**env, "NECGS_CACHE_DIR": str(Path(tmp) / "cache")}
        archive = Path(tmp) / "one.ncgs"
        compress_cmd = [*necgs, "compress", str(mesh_path), "-o", str(archive), "--prior", args.prior]
        if args.fine_tune:
            compress_cmd += ["--fine-tune", str(args.fine_tune)]
        comp = timed(compress_cmd, env)
        dec = timed([*necgs, "decompress", str(archive), "-o", str(Path(tmp) / "out")], env)
        decoded = load_mesh(next((Path(tmp) / "out").iterdir()))
        size = archive.stat().st_size
    original = load_mesh(mesh_path)
    m = compare_meshes(decoded, original, args.samples)
    return {
        "compress_wall_s": comp["wall_s"],
        "compress_cpu_s": comp["cpu_s"],
        "decompress_wall_s": dec["wall_s"],
        "decompress_cpu_s": dec["cpu_s"],
        "total_wall_s": comp["wall_s"] + dec["wall_s"],
        "bytes": size,
        "ratio_ply": binary_ply_bytes(original) / size,
        "cd": m.cd,
        "f1_005": m.f1_005,
        "cd_vs_set_trained": m.cd / args.set_cd if args.set_cd else None,
        "compress_output": comp["stdout"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mesh", type=Path)
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
    runs = [run_once(args.mesh, args, env) for _ in range(args.repeats)]
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
