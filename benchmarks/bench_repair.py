"""Issue #32: one-process ``compress``'s empty-shape repair on a ``bench_scaling.py`` row's archive.

``bench_scaling.py`` rows skip the repair (as the multi-node path does) and count the shapes that
decode empty. This reads such a row's trained decoder and features back from its archive, runs
:func:`necgs.training.features.repair_empty_shapes` on the row's block volumes exactly as
``compress`` does after training, writes the repaired archive beside the original
(``archive_repaired.ncgs``), and decodes every repaired shape from it alone (CD / F1 against its
moved original, as the row's decode stage scores it). The other shapes' features are not touched,
which the script checks symbol for symbol. Peak memory is the whole process's (``VmHWM``).

Usage: python benchmarks/bench_repair.py ~/.cache/necgs_bench/scaling/K128_N1000_e10 --K 128 --N 1000 --tag e10
Writes benchmarks/results/scaling_<tag>_repair.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from bench_scaling import _row_files, copy_meshes, distinct_meshes
from bench_volume_memory import _status_kb

from necgs.coding.codec_archive import write_codec_archive
from necgs.compression.decode import decode_shape, open_archive
from necgs.geometry.block_volume import BlockVolume, VolumeSet
from necgs.metrics import compare_meshes
from necgs.settings import preset
from necgs.training.features import repair_empty_shapes
from necgs.training.train import TrainedCodec

from _common import RESULTS, machine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("row", type=Path, help="the row's folder in bench_scaling's work folder (holds archive.ncgs)")
    p.add_argument("--K", type=int, required=True)
    p.add_argument("--N", type=int, required=True)
    p.add_argument("--tag", required=True, help="the row's bench_scaling tag (names the result file)")
    p.add_argument("--distinct", type=int, default=38)
    p.add_argument("--samples", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    folder = args.row.parent / f"K{args.K}"
    picks = _row_files(folder, args.N, args.distinct)
    volumes = VolumeSet([BlockVolume.open(folder / f"{j:05d}.ncgv") for j in picks], args.K)
    with open_archive(args.row / "archive.ncgs") as arc:
        codec = TrainedCodec(arc.decoder_cfg, arc.weights(), arc.initial_features())
        settings, shapes = arc.metadata["config"], list(arc.shapes)
    train = preset("quick", device="cpu", resolution=args.K).train
    t = time.perf_counter()
    repaired_codec, repaired = repair_empty_shapes(codec, volumes, train)
    repair_seconds = time.perf_counter() - t
    per = int(np.prod(codec.features.shape[1:]))
    before, after = codec.features.symbols.reshape(-1, per), repaired_codec.features.symbols.reshape(-1, per)
    kept = [i for i in range(args.N) if i not in repaired]
    if not np.array_equal(before[kept], after[kept]):
        raise SystemExit("the repair changed the feature of a shape that was not empty")
    output = args.row / "archive_repaired.ncgs"
    size = write_codec_archive(output, settings, repaired_codec, shapes)
    fit = preset("quick", resolution=args.K).fit
    copies = copy_meshes(distinct_meshes(args.distinct)[0], picks, args.distinct, fit)
    rows = []
    with open_archive(output) as arc:
        decoder = arc.decoder("cpu")
        for i in repaired:
            with torch.no_grad():
                mesh = decode_shape(arc, decoder, i, torch.device("cpu"), sparse=True)
            m = compare_meshes(mesh, copies[i][0], n_samples=args.samples)
            rows.append({"name": mesh.name, "faces": mesh.n_faces, "cd": m.cd, "f1_005": m.f1_005, "f1_01": m.f1_01})
    result = {
        "row": str(args.row),
        "K": args.K,
        "N": args.N,
        "repaired": len(repaired),
        "still_empty": sum(r["faces"] == 0 for r in rows),
        "repair_seconds": repair_seconds,
        "archive_bytes": args.row.joinpath("archive.ncgs").stat().st_size,
        "repaired_archive_bytes": size,
        "peak_rss_mb": _status_kb("VmHWM:") / 1024,
        "shapes": rows,
        "machine": machine(),
    }
    path = RESULTS / f"scaling_{args.tag}_repair.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "shapes"}), flush=True)


if __name__ == "__main__":
    main()
