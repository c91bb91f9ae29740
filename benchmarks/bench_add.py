"""Growing archives (issue 8): compress part of humans_ama, then add shapes against the
frozen decoder, and compare with compressing the same shapes from scratch together.

Groups: base = the first crane frames; "samba" = samba frames (a different motion);
"crane-rest" = crane frames held out of the base run. Reports bytes per added shape,
CD / F1 of the added shapes (added vs from scratch) and seconds per added shape.
Writes benchmarks/results/add_shapes.json.

Usage: python benchmarks/bench_add.py [--per-group 8] [--preset quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from necgs.compression import add_shapes, compress, decompress, describe
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import load_meshes
from necgs.metrics import compare_meshes, mean_metrics
from necgs.settings import preset

from _common import write_json


def scores(archive: Path, names: list[str], originals: dict) -> dict:
    decoded = decompress(archive, shapes=names)
    m = mean_metrics([compare_meshes(d, originals[d.name]) for d in decoded])
    return m.to_dict()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--per-group", type=int, default=8)
    p.add_argument("--preset", default="quick")
    p.add_argument("--width", default="small")
    args = p.parse_args()
    meshes = load_meshes(resolve_dataset("humans_ama")).meshes
    crane = [m for m in meshes if m.name.startswith("crane/")]
    samba = [m for m in meshes if m.name.startswith("samba/")]
    n = args.per_group
    base, crane_rest, samba_part = crane[0::2][:n], crane[1::2][:n], samba[::2][:n]
    originals = {m.name: m for m in meshes}
    cfg = preset(args.preset, width=args.width, device="cpu")
    out = {"args": vars(args), "groups": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        compress(base, tmp / "base.ncgs", cfg, progress=lambda *a: None, checkpoint_dir=tmp / "c0")
        out["base_bytes"] = (tmp / "base.ncgs").stat().st_size
        for label, group in (("crane-rest", crane_rest), ("samba", samba_part)):
            t = time.perf_counter()
            add_shapes(tmp / "base.ncgs", group, tmp / f"grown_{label}.ncgs")
            sec = (time.perf_counter() - t) / len(group)
            d = describe(tmp / f"grown_{label}.ncgs")
            added = [s for s in d["shapes"] if s["batch"] == 1]
            compress(
                base + group,
                tmp / f"scratch_{label}.ncgs",
                cfg,
                progress=lambda *a: None,
                checkpoint_dir=tmp / f"c_{label}",
            )
            names = [m.name for m in group]
            out["groups"][label] = {
                "added_shapes": len(group),
                "bytes_per_added_shape": sum(s["feature_bytes"] for s in added) / len(added),
                "grown_total_bytes": d["bytes"],
                "scratch_total_bytes": (tmp / f"scratch_{label}.ncgs").stat().st_size,
                "seconds_per_added_shape": sec,
                "added_frozen": scores(tmp / f"grown_{label}.ncgs", names, originals),
                "from_scratch": scores(tmp / f"scratch_{label}.ncgs", names, originals),
            }
            print(label, out["groups"][label], flush=True)
    print(write_json("add_shapes", out))


if __name__ == "__main__":
    main()
