"""Size the G-PCC sweeps: every setting of both modes on a few shapes of each body set.

For each setting of ``gpcc`` (octree) and ``gpcc-trisoup`` (their ``sweep()``), the shapes are
encoded and decoded one at a time with MPEG's ``tmc3`` (built by ``scripts/build_tmc3.sh``) and
meshed back by screened Poisson; the row records bytes, the ratio against the shape's binary PLY,
the CD at 1e5 samples and the seconds of each side. It tells whether the sweeps span the ratios
NeCGS works at (about 50x to 1000x on the body sets), before the full rate-distortion runs.

Usage:
    python benchmarks/bench_gpcc_sizing.py --sets humans_ama animals_sumner --shapes 1

Writes benchmarks/results/gpcc_sizing.json (``--tag`` appends to the name).
"""

from __future__ import annotations

import argparse
import time

from necgs.baselines.base import get_codec
from necgs.errors import NecgsError
from necgs.io.ply import binary_ply_bytes
from necgs.metrics import compare_meshes

from _common import evenly_spaced, write_json

SAMPLES = 100_000


def measure(codec_name: str, setting: dict, mesh) -> dict:
    """One setting on one mesh: bytes, ratio vs binary PLY, CD, and seconds to encode and decode."""
    codec = get_codec(codec_name)
    t = time.perf_counter()
    blobs = codec.encode([mesh], setting)
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    decoded = codec.decode(blobs, setting)
    decode_s = time.perf_counter() - t
    size = sum(map(len, blobs))
    return {
        "codec": codec_name,
        "setting": setting,
        "label": codec.setting_label(setting),
        "shape": mesh.name,
        "bytes": size,
        "ratio_ply": binary_ply_bytes(mesh) / size,
        "cd": compare_meshes(decoded[0], mesh, SAMPLES).cd,
        "encode_s": encode_s,
        "decode_s": decode_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["humans_ama", "animals_sumner"])
    parser.add_argument("--shapes", type=int, default=1, help="shapes per set, evenly spaced")
    parser.add_argument("--codecs", nargs="+", default=["gpcc", "gpcc-trisoup"])
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    for name in args.codecs:
        available, why = get_codec(name).available()
        if not available:
            raise NecgsError(f"{name} cannot run here: {why}")
    rows = []
    for dataset in args.sets:
        every = evenly_spaced(dataset, None).meshes
        meshes = [every[int((i + 0.5) * len(every) / args.shapes)] for i in range(args.shapes)]  # centred picks
        for name in args.codecs:
            for setting in get_codec(name).sweep():
                for mesh in meshes:
                    row = {"dataset": dataset, **measure(name, setting, mesh)}
                    rows.append(row)
                    print(
                        f"{dataset:15s} {row['label']:32s} {row['bytes']:7d} B {row['ratio_ply']:7.1f}x "
                        f"CD {row['cd'] * 1e3:6.2f}e-3 enc {row['encode_s']:5.1f} s dec {row['decode_s']:5.1f} s",
                        flush=True,
                    )
                    path = write_json(f"gpcc_sizing{args.tag}", {"samples": SAMPLES, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
