"""Peak memory of a compression's volumes: dense N x 4 x K^3 (as before) against the band's blocks.

The data path of ``compress`` from the fitted volumes on: the set's volumes as fitting hands them
to training, the training's index of blocks and coarse targets, the run's digest (which reads every
volume) and one epoch of patch training with the ``quick`` preset's decoder and settings. Each arm
runs in its own process and reports its peak resident set (``VmHWM``; ``ru_maxrss`` would carry the
launching process's peak across ``exec``) and, sampled every 20 ms,
its peak anonymous and file-backed resident memory (mapped cache files count as file-backed pages):

- ``dense``: every volume read from a dense ``.npy`` (the cache's form before block volumes) into a
  list and stacked, as ``fit_volumes`` did, then trained from the (N, 4, K, K, K) tensor. With
  ``--today PATH`` (a checkout of the code before block volumes, e.g. ``git archive r30-merge``)
  this arm runs that code, so its block index is the old one too.
- ``blocks``: every volume mapped from its block file (``geometry/block_volume.py``, the cache's
  form now) into a ``VolumeSet`` and trained from it.

Shapes: ``--distinct`` meshes spread over the shared real sets (AMA bodies, Sumner animals,
Thingi10K parts), fitted with the ``quick`` preset at K into a private cache, then every fitted
volume's exact mirror image and quarter turns (``geometry/symmetry.py``, 8 copies) until there are
N; beyond 8 x distinct the copies repeat (each in its own file, so no page is shared).

Usage: python benchmarks/bench_volume_memory.py [--resolution 64] [--shapes 100 300] [--distinct 38]
    [--arms dense blocks] [--dense-max 300] [--today /tmp/necgs-old] [--work /tmp/necgs_volume_memory] [--tag ""]
Writes benchmarks/results/volume_memory[_tag].json; a row measured again (arm, N, K) replaces the
file's earlier one, the others stay.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SETS = ("humans_ama", "animals_sumner", "cad_thingi10k")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


class PeakSampler:
    """Peak anonymous and file-backed resident memory of this process, sampled in a thread."""

    def __init__(self, every: float = 0.02) -> None:
        self.anon = self.file = 0
        self.every, self.running = every, True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            self.anon = max(self.anon, _status_kb("RssAnon:"))
            self.file = max(self.file, _status_kb("RssFile:"))
            time.sleep(self.every)

    def stop(self) -> dict:
        self.running = False
        self.thread.join()
        return {"peak_anon_mb": self.anon / 1024, "peak_file_mb": self.file / 1024}


def prepare(args) -> Path:
    """Fit the distinct shapes and write N symmetry copies as dense ``.npy`` and block files; returns the folder."""
    os.environ["NECGS_CACHE_DIR"] = str(Path(args.work) / "cache")  # a private fitting cache
    from necgs.geometry.block_volume import BlockVolume
    from necgs.geometry.fit import fit_volumes
    from necgs.geometry.symmetry import augment_volumes
    from necgs.settings import preset

    from _common import evenly_spaced

    folder = Path(args.work) / f"K{args.resolution}"
    n = max(args.shapes)
    if (folder / "done.json").is_file() and json.loads((folder / "done.json").read_text())["shapes"] >= n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    per_set = [args.distinct // len(SETS) + (i < args.distinct % len(SETS)) for i in range(len(SETS))]
    meshes = [m for name, k in zip(SETS, per_set) for m in evenly_spaced(name, k).meshes]
    cfg = preset("quick", device="cpu", resolution=args.resolution).fit
    t, cpu = time.perf_counter(), time.process_time()
    fitted = fit_volumes(meshes, cfg, progress=True)
    fit_seconds, fit_cpu_seconds = time.perf_counter() - t, time.process_time() - cpu
    copies = 0
    for volume in fitted.volumes:
        turned, _ = augment_volumes(volume[None], "turns")
        for c, copy in enumerate(turned):
            for j in range(copies + c, n, 8 * len(meshes)):
                BlockVolume.from_dense(copy).save(folder / f"{j:05d}.ncgv")
                if "dense" in args.arms and j < args.dense_max:
                    np.save(folder / f"{j:05d}.npy", copy.numpy(), allow_pickle=False)
        copies += 8
    meta = {
        "shapes": n,
        "distinct": len(meshes),
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": fit_cpu_seconds,  # every thread's; the wall time stretches on shared cores
        "fit": cfg.to_dict(),
    }
    (folder / "done.json").write_text(json.dumps(meta))
    return folder


def arm(name: str, folder: Path, n: int, resolution: int, epochs: int) -> dict:
    """One arm in this process: the volumes as training gets them, then one training run."""
    from dataclasses import replace

    from necgs.settings import preset
    from necgs.training.train import train_autodecoder

    torch.set_num_threads(2)
    sampler = PeakSampler()
    base = _status_kb("VmRSS:") / 1024
    t = time.perf_counter()
    if name == "dense":
        volumes = [torch.from_numpy(np.load(folder / f"{j:05d}.npy", allow_pickle=False)) for j in range(n)]
        stacked = torch.stack(volumes)  # what fit_volumes returned: every volume, then their stack
        del volumes
        volumes, stored = stacked, {}
    else:
        from necgs.geometry.block_volume import BlockVolume, VolumeSet

        volumes = VolumeSet([BlockVolume.open(folder / f"{j:05d}.ncgv") for j in range(n)])
        stored = {"band_blocks": volumes.blocks, "block_bytes_mb": volumes.nbytes / 2**20}
    load_seconds = time.perf_counter() - t
    after_load = _status_kb("VmHWM:") / 1024
    cfg = preset("quick", device="cpu", resolution=resolution)
    tcfg = replace(cfg.train, epochs=epochs, checkpoint_every=0)
    t = time.perf_counter()
    codec = train_autodecoder(volumes, cfg.decoder(), tcfg, progress=False)
    peaks = sampler.stop()
    return {
        "arm": name,
        "shapes": n,
        "K": resolution,
        "epochs": epochs,
        "base_rss_mb": base,
        "peak_rss_after_load_mb": after_load,
        "peak_rss_mb": _status_kb("VmHWM:") / 1024,
        **peaks,
        "load_seconds": load_seconds,
        "train_seconds": time.perf_counter() - t,
        "final_loss": codec.losses[-1],
        **stored,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--shapes", type=int, nargs="+", default=[100, 300])
    p.add_argument("--distinct", type=int, default=38, help="meshes fitted; the rest are their symmetry copies")
    p.add_argument("--arms", nargs="+", default=["dense", "blocks"], choices=["dense", "blocks"])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--dense-max", type=int, default=300, help="the dense arm runs only up to this N (it needs N x 2 x 4K^3 floats)"
    )
    p.add_argument("--today", help="a checkout of the code before block volumes: the dense arm runs it")
    p.add_argument("--work", default="/tmp/necgs_volume_memory", help="fitting cache and volume files")
    p.add_argument("--tag", default="")
    p.add_argument("--child", nargs=3, metavar=("ARM", "FOLDER", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        name, folder, n = args.child
        print(json.dumps(arm(name, Path(folder), int(n), args.resolution, args.epochs)))
        return
    folder = prepare(args)
    rows = []
    for n in args.shapes:
        for name in args.arms:
            if name == "dense" and n > args.dense_max:
                continue
            env = dict(os.environ)
            code = args.today if name == "dense" and args.today else str(ROOT)
            env["PYTHONPATH"] = os.pathsep.join([code, str(ROOT / "benchmarks")])
            cmd = [sys.executable, __file__, "--resolution", str(args.resolution), "--epochs", str(args.epochs)]
            out = subprocess.run(
                [*cmd, "--child", name, str(folder), str(n)], env=env, capture_output=True, text=True, check=True
            )
            rows.append(
                {**json.loads(out.stdout.strip().splitlines()[-1]), "code": "today" if code != str(ROOT) else "this"}
            )
            print(rows[-1], flush=True)
    from _common import RESULTS, write_json

    name = "volume_memory" + (f"_{args.tag}" if args.tag else "")
    path, key = RESULTS / f"{name}.json", ("arm", "shapes", "K")
    earlier = json.loads(path.read_text()) if path.is_file() else {"prepared": {}, "rows": [], "runs": []}
    new = {tuple(r[k] for k in key) for r in rows}
    kept = [r for r in earlier["rows"] if tuple(r[k] for k in key) not in new]
    prepared = {**earlier["prepared"], f"K{args.resolution}": json.loads((folder / "done.json").read_text())}
    runs = [*earlier["runs"], {k: v for k, v in vars(args).items() if k != "child"}]
    print(write_json(name, {"runs": runs, "prepared": prepared, "rows": kept + rows}))


if __name__ == "__main__":
    main()
