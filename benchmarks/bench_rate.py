"""Rate benchmark (issue #14): archive bytes per section, estimate vs real, CD and decode time.

For each setting (decoder width, weight bits, lambda_R) it trains once on the same shapes,
writes the archive (format 1.2) and, for comparison, the same symbols in the 1.1 layout
(one ``weights`` stream with one categorical model, JSON shape records, one section per
feature: today's archive before this issue), then decodes and measures CD against the
input meshes.

    python benchmarks/bench_rate.py --dataset humans_ama --shapes 16 --lambdas 0,0.02,0.05 \\
        --name rate_ama16

Rate control instead of settings: ``--target-ratios 90,50`` or ``--target-bytes 39670``; 16 samba
frames that neither the table's 8 bodies nor the landing runs' use are ``--dataset humans_ama/samba
--shapes 16 --offset 1``.

Writes benchmarks/results/<name>.json and <name>.csv. Short training and subsets on this
2-core machine: the ``args`` in the JSON say which.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from necgs.coding.archive import Section, archive_bytes
from necgs.coding.codec_archive import FORMAT, legacy_feature_sections
from necgs.coding.entropy import encode_symbols
from necgs.compression import compress, decompress, describe, open_archive
from necgs.metrics import compare_meshes
from necgs.settings import preset

from _common import RESULTS, evenly_spaced, write_json


def legacy_archive(path: Path) -> tuple[bytes, dict]:
    """The archive's symbols written in the 1.1 layout (today's writer), and its bytes per section."""
    with open_archive(path) as arc:
        weights = arc.weights()
        features = arc.initial_features()
        meta = dict(arc.metadata)
        meta.pop("rate_estimate", None)
        meta["shapes"] = [{k: v for k, v in s.items()} for s in arc.shapes]
        coder = meta["config"]["coder"]
    symbols = np.concatenate([q.symbols for q in weights.values()])
    wcoder, wblob = encode_symbols(symbols, "auto" if coder == "laplace" else coder)
    _, fsections = legacy_feature_sections(features, 0, 0, coder)
    sections = [Section("weights", wblob, {"coder": wcoder, "count": int(symbols.size)}), *fsections]
    blob = archive_bytes({**meta, "format": FORMAT}, sections, minor=1)
    feature = sum(len(s.data) for s in fsections)
    return blob, {
        "bytes": len(blob),
        "weights_bytes": len(wblob),
        "feature_bytes": feature,
        "header_bytes": len(blob) - len(wblob) - feature,
    }


def decode_seconds(archives: list, rounds: int = 2) -> tuple[list[float], list]:
    """Best-of-``rounds`` decode time of each archive, interleaved so machine load hits all alike."""
    best, decoded = [float("inf")] * len(archives), [None] * len(archives)
    for _ in range(rounds):
        for i, a in enumerate(archives):
            t = time.perf_counter()
            decoded[i] = decompress(a, device="cpu")
            best[i] = min(best[i], time.perf_counter() - t)
    return best, decoded


def measure(loaded, setting: dict, base: dict, samples: int) -> dict:
    """Train, write, decode and score one setting."""
    cfg = preset(
        base["preset"],
        width=setting["width"],
        epochs=base["epochs"],
        weight_bits=setting["bits"],
        feature_bits=setting.get("feature_bits") or setting["bits"],
        tied_modules=setting.get("tied_modules") or 0,
        device="cpu",
    )
    cfg = replace(
        cfg, train=replace(cfg.train, lambda_rate=setting["lambda"], learn_ranges=bool(setting.get("learned")))
    )
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp:
        path = Path(tmp) / "set.ncgs"
        result = compress(loaded, path, cfg, checkpoint_dir=Path(tmp) / "ckpt", progress=lambda *a: None)
        d = describe(path)
        with open_archive(path) as arc:
            table_bytes = arc.reader.section_info("shapes").length
        old_blob, old = legacy_archive(path)
        (decode_s, old_decode_s), (decoded, _) = decode_seconds([path, old_blob])
    cds = [compare_meshes(rec, gt, samples).cd for rec, gt in zip(decoded, loaded.meshes)]
    est = d["rate_estimate"] or {}
    return {
        **setting,
        "bytes": d["bytes"],
        "header_bytes": d["header_bytes"],
        "weights_bytes": d["weights_bytes"],
        "feature_model_bytes": d["feature_model_bytes"],
        "feature_bytes": d["feature_bytes"],
        "shape_table_bytes": table_bytes,
        "n_shapes": len(decoded),
        "weights_coders": json.dumps(d["coders"]),
        "est_weights_bytes": est.get("weights_bytes"),
        "est_features_bytes": est.get("features_bytes"),
        "params": d["decoder_parameters"],
        "weight_bits_per_param": 8 * d["weights_bytes"] / d["decoder_parameters"],
        "v11_bytes": old["bytes"],
        "v11_header_bytes": old["header_bytes"],
        "v11_weights_bytes": old["weights_bytes"],
        "v11_feature_bytes": old["feature_bytes"],
        "ratio_ply": d["ratio_ply"],
        "cd_mean": float(np.mean(cds)),
        "cd_median": float(np.median(cds)),
        "empty": len(result.empty_shapes),
        "train_s": result.seconds["train"],
        "decode_ms_per_shape": 1000 * decode_s / len(decoded),
        "v11_decode_ms_per_shape": 1000 * old_decode_s / len(decoded),
    }


def landing(loaded, base: dict, samples: int, ratio: float | None = None, size: int | None = None) -> dict:
    """Compress with ``--target-ratio`` (or ``--target-bytes``): the target, the plan, what was reached."""
    cfg = preset(base["preset"], epochs=base["epochs"], device="cpu")
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp:
        path = Path(tmp) / "set.ncgs"
        result = compress(
            loaded,
            path,
            cfg,
            checkpoint_dir=Path(tmp) / "ckpt",
            progress=lambda *a: None,
            target_ratio=ratio,
            target_bytes=size,
        )
        decoded = decompress(path, device="cpu")
        _, old = legacy_archive(path)
    plan = result.rate_plan
    cds = [compare_meshes(rec, gt, samples).cd for rec, gt in zip(decoded, loaded.meshes)]
    return {
        "target_ratio": ratio,
        "target_bytes": size,
        "reached_ratio": result.ratio_ply,
        "error": result.ratio_ply / ratio - 1 if ratio else result.bytes / size - 1,
        "width": plan.point.width,
        "bits": plan.point.bits,
        "lambda": plan.point.lambda_rate,
        "feature_bits": plan.point.feature_bits or plan.point.bits,
        "tied_modules": plan.point.tied_modules,
        "predicted_bytes": plan.predicted_bytes,
        "weight_scale": plan.weight_scale,
        "notes": result.notes,
        "train_s": result.seconds["train"],
        "bytes": result.bytes,
        "v11_bytes": old["bytes"],
        "cd_mean": float(np.mean(cds)),
        "empty": len(result.empty_shapes),
    }


def table_point(row: dict) -> str:
    """The row as a ``RatePoint(...)`` line of :data:`necgs.target_rate.RATE_TABLE`."""
    per_shape = (row["feature_bytes"] + row["feature_model_bytes"]) / row["n_shapes"]
    return (
        f"    RatePoint({row['width']!r}, {row['bits']}, {row['lambda']}, {row['weight_bits_per_param']:.3f}, "
        f"{per_shape:.1f}, {row['cd_mean']:.3e}"
        + (f", feature_bits={row['feature_bits']}" if row.get("feature_bits") else "")
        + (f", tied_modules={row['tied_modules']}" if row.get("tied_modules") else "")
        + "),"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="humans_ama")
    p.add_argument("--shapes", type=int, default=16)
    p.add_argument("--preset", default="quick")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--widths", default="small")
    p.add_argument("--bits", default="6")
    p.add_argument("--feature-bits", type=int, help="bits of the features (default: --bits)")
    p.add_argument("--tied-modules", type=int, help="tie the decoder's first N upsampling modules (issue #30)")
    p.add_argument("--lambdas", default="0,0.05")
    p.add_argument("--samples", type=int, default=30_000)
    p.add_argument("--target-ratios", help="instead of settings: compress with these --target-ratio values")
    p.add_argument("--target-bytes", help="instead of settings: compress with these --target-bytes values")
    p.add_argument("--offset", type=int, default=0, help="skip this many shapes before the evenly spaced pick")
    p.add_argument("--learned", default="0", help="learned quantization ranges: 0, 1 or 0,1 (both)")
    p.add_argument("--name", default=None)
    args = p.parse_args()
    loaded = evenly_spaced(args.dataset, args.shapes, args.offset)
    base = {"preset": args.preset, "epochs": args.epochs}
    name = args.name or f"rate_{args.dataset}_{args.shapes}"
    if args.target_ratios or args.target_bytes:
        rows = [landing(loaded, base, args.samples, ratio=float(r)) for r in (args.target_ratios or "").split(",") if r]
        rows += [landing(loaded, base, args.samples, size=int(b)) for b in (args.target_bytes or "").split(",") if b]
        print(pd.DataFrame(rows))
        write_json(name, {"args": vars(args), "n_shapes": len(loaded.meshes), "landing": rows})
        return
    rows = []
    for width in args.widths.split(","):
        width = int(width) if width.isdigit() else width
        for bits in (int(b) for b in args.bits.split(",")):
            for lam, learned in itertools.product(
                (float(x) for x in args.lambdas.split(",")), (bool(int(x)) for x in args.learned.split(","))
            ):
                setting = {"width": width, "bits": bits, "lambda": lam, "learned": learned}
                if args.feature_bits:
                    setting["feature_bits"] = args.feature_bits
                if args.tied_modules:
                    setting["tied_modules"] = args.tied_modules
                row = measure(loaded, setting, base, args.samples)
                rows.append(row)
                print(json.dumps(row), flush=True)
                write_json(name, {"args": vars(args), "n_shapes": len(loaded.meshes), "rows": rows})
    pd.DataFrame(rows).to_csv(RESULTS / f"{name}.csv", index=False)
    print("rate table points (necgs/target_rate.py RATE_TABLE):")
    for r in rows:
        print(table_point(r))
    print(
        pd.DataFrame(rows)[
            [
                "width",
                "bits",
                "lambda",
                "bytes",
                "v11_bytes",
                "weights_bytes",
                "est_weights_bytes",
                "feature_bytes",
                "est_features_bytes",
                "header_bytes",
                "cd_mean",
                "decode_ms_per_shape",
            ]
        ]
    )


if __name__ == "__main__":
    main()
