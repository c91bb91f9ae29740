"""Fuzz the archive reader and the decoder behind it with a fixed-seed loop.

Cases: truncation at every byte, single bit flips at every byte, header-field edits
(version, lengths), random byte replacements and splices. A case passes when reading
and decoding either succeeds or raises one of the library's ArchiveError types, within a
time bound, without allocating more than a bound. Writes benchmarks/results/fuzz_archive.json.

Usage: python benchmarks/fuzz_archive.py [--cases 10000]
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import trimesh

from necgs.compression import compress, decompress
from necgs.config import FitConfig, NecgsConfig, TrainConfig
from necgs.errors import ArchiveError
from necgs.io.mesh import Mesh

from _common import write_json


def small_archive() -> bytes:
    meshes = []
    for i in range(2):
        t = trimesh.creation.torus(major_radius=1 + 0.1 * i, minor_radius=0.3, major_sections=24, minor_sections=12)
        meshes.append(Mesh(t.vertices, t.faces, f"t{i}"))
    cfg = NecgsConfig(
        fit=FitConfig(resolution=16, iterations=10, samples=2000),
        width=4,
        train=TrainConfig(epochs=30, checkpoint_every=0),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.ncgs"
        compress(meshes, path, cfg, progress=lambda *a: None, checkpoint_dir=Path(tmp) / "c")
        return path.read_bytes()


def mutations(blob: bytes, n: int, rng: np.random.Generator):
    size = len(blob)
    for cut in range(size):
        yield "truncate", blob[:cut]
    for i in range(size):
        b = bytearray(blob)
        b[i] ^= 1 << int(rng.integers(8))
        yield "bitflip", bytes(b)
    for field_off, fmt in ((8, "<H"), (10, "<H"), (12, "<I"), (16, "<I")):
        for value in (0, 1, 2, 255, 65535, 2**31 - 1, 2**32 - 1):
            b = bytearray(blob)
            try:
                struct.pack_into(fmt, b, field_off, value)
            except struct.error:
                continue
            yield "field", bytes(b)
    done = 0
    while done < n:  # n random mutations on top of the exhaustive truncations and flips
        b = bytearray(blob)
        kind = int(rng.integers(3))
        if kind == 0:
            for _ in range(int(rng.integers(1, 8))):
                b[int(rng.integers(size))] = int(rng.integers(256))
            yield "replace", bytes(b)
        elif kind == 1:
            i, j = sorted(rng.integers(0, size, 2).tolist())
            yield "splice", bytes(b[:i] + b[j:] + b[i:j])
        else:
            i = int(rng.integers(size))
            yield (
                "insert",
                bytes(b[:i] + rng.integers(0, 256, int(rng.integers(1, 64))).astype(np.uint8).tobytes() + b[i:]),
            )
        done += 1


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cases", type=int, default=10_000, help="random mutations (beyond every truncation and bit flip)")
    args = p.parse_args()
    blob = small_archive()
    rng = np.random.default_rng(0)
    outcomes, kinds = Counter(), Counter()
    worst_ms, peak = 0.0, 0
    crashes = []
    tracemalloc.start()
    for kind, data in mutations(blob, args.cases, rng):
        kinds[kind] += 1
        tracemalloc.reset_peak()
        t = time.perf_counter()
        try:
            decompress(data, device="cpu")
            outcomes["decoded"] += 1
        except ArchiveError as exc:
            outcomes[type(exc).__name__] += 1
        except Exception as exc:  # anything else is a bug: record it
            outcomes["CRASH"] += 1
            crashes.append(f"{kind}: {type(exc).__name__}: {exc}"[:300])
        worst_ms = max(worst_ms, 1000 * (time.perf_counter() - t))
        peak = max(peak, tracemalloc.get_traced_memory()[1])
    total = sum(kinds.values())
    result = {
        "archive_bytes": len(blob),
        "cases": total,
        "kinds": dict(kinds),
        "outcomes": dict(outcomes),
        "crashes": crashes[:20],
        "max_ms_per_case": worst_ms,
        "peak_traced_bytes": peak,
    }
    print(write_json("fuzz_archive", result))
    print(result)


if __name__ == "__main__":
    main()
