"""Distributed training with 2 CPU processes, and resuming a run killed mid-training."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import trimesh

from necgs.compression import compress, decompress
from necgs.config import FitConfig, NecgsConfig, TrainConfig
from necgs.distributed import launch_compress
from necgs.io.loading import save_mesh
from necgs.io.mesh import Mesh
from necgs.metrics import compare_meshes, mean_metrics

CFG = NecgsConfig(
    fit=FitConfig(resolution=16, iterations=20, samples=3000, device="cpu"),
    width=8,
    train=TrainConfig(epochs=150, lr=1e-2, checkpoint_every=0, device="cpu"),
)


def tori(folder: Path, n: int = 4) -> list[Mesh]:
    out = []
    for i in range(n):
        t = trimesh.creation.torus(major_radius=1 + 0.08 * i, minor_radius=0.3, major_sections=32, minor_sections=16)
        m = Mesh(t.vertices * 2 + i, t.faces, f"torus{i}")
        save_mesh(m, folder / f"torus{i}.ply")
        out.append(m)
    return out


def quality(archive: Path, meshes: list[Mesh]) -> float:
    decoded = decompress(archive)
    assert sorted(m.name for m in decoded) == sorted(m.name for m in meshes)  # every shape exactly once
    by_name = {m.name: m for m in decoded}
    return mean_metrics([compare_meshes(by_name[m.name], m, 20_000) for m in meshes]).cd


def test_two_processes_match_one(tmp_path):
    meshes = tori(tmp_path / "in")
    single = tmp_path / "single.ncgs"
    compress(tmp_path / "in", single, CFG, progress=lambda *a: None, checkpoint_dir=tmp_path / "ck1")
    double = tmp_path / "double.ncgs"
    assert launch_compress(str(tmp_path / "in"), str(double), CFG, nproc=2) == 0
    cd1, cd2 = quality(single, meshes), quality(double, meshes)
    assert cd2 < 0.03 and cd2 < 1.5 * cd1 + 2e-3, (cd1, cd2)


SCRIPT = """
import json, sys
from necgs.compression import compress
from necgs.config import FitConfig, NecgsConfig, TrainConfig
cfg = NecgsConfig(fit=FitConfig(resolution=16, iterations=20, samples=3000, device="cpu"), width=8,
                  train=TrainConfig(epochs=400, lr=1e-2, checkpoint_every=5, device="cpu"))
r = compress(sys.argv[1], sys.argv[2], cfg, progress=lambda *a: None, checkpoint_dir=sys.argv[3])
print(json.dumps({"resumed": r.resumed_from_epoch}))
"""


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    meshes = tori(tmp_path / "in", 3)
    out, ckpt = tmp_path / "set.ncgs", tmp_path / "ckpt"
    args = [sys.executable, "-c", SCRIPT, str(tmp_path / "in"), str(out), str(ckpt)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        meta = ckpt / "checkpoint.json"
        if meta.is_file() and json.loads(meta.read_text())["epoch"] >= 20:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((ckpt / "checkpoint.json").read_text())["epoch"]
    assert 20 <= killed_at < 400 and not out.exists()  # no half archive under the final name
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-500:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["resumed"] >= killed_at
    assert quality(out, meshes) < 0.03
