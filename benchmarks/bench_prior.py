"""Priors, evaluated honestly: shapes the prior never saw, beside decimation + Draco at equal bytes.

One run on ``--shapes`` evenly spaced shapes of a set:
- NeCGS against each ``--prior`` (only features fitted), timed as a user's whole compression;
- optionally NeCGS trained on the set (``--set-trained standard``) on the same shapes;
- decimation + Draco on a fine sweep, interpolated (log bytes) to each NeCGS point's bytes;
- the metric's sampling floor;
- ``--single``: one shape compressed alone against each prior (time, CD), beside the same
  shape's CD in the set-trained archive (or, with ``--set-cd-from``, an earlier run's);
- ``--fine-tune STEPS``: each prior also with a fine-tuned decoder delta, on the set and alone.

Refuses to run when a shape of the set is in a prior's training data (by source and name).

Usage:
    python benchmarks/bench_prior.py humans_ama/samba --priors bodies general --shapes 16 \\
        --set-trained standard --single 3 --tag samba16
    python benchmarks/bench_prior.py humans_ama/samba --priors bodies --shapes 16 --single 3 \
        --fine-tune 100 --set-cd-from benchmarks/results/prior_samba16_bodies_encoder_lr5e-2.json \
        --tag samba16_bodies_finetune

Writes benchmarks/results/prior_<tag>.json and .csv.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from necgs.compression import compress, decompress
from necgs.config import PriorFitConfig
from necgs.evaluation.runner import evaluate
from necgs.io.ply import binary_ply_bytes
from necgs.metrics import compare_meshes
from necgs.priors.installed import find_prior
from necgs.priors.training import resolve_source

from _common import RESULTS, evenly_spaced, write_json

#: Decimation + Draco settings dense enough to interpolate at the bytes of a prior archive.
PEER_SWEEP = [
    {"keep": k, "bits": b}
    for k, b in ((0.1, 9), (0.05, 9), (0.03, 8), (0.02, 8), (0.015, 8), (0.01, 8), (0.007, 8), (0.005, 7))
]


def check_held_out(prior, label: str, names: list[str]) -> None:
    """Raise if any evaluated shape is in the prior's training data."""
    trained = set(prior.card.get("shape_names", []))
    overlap = [n for n in names if f"{label}/{n}" in trained]
    sources = [t["source"] for t in prior.card.get("trained_on", [])]
    if overlap or any(label == s or label.startswith(s + "/") for s in sources):
        raise SystemExit(f"prior {prior.name!r} was trained on {label} ({overlap[:3]}): not a held-out evaluation")


def peer_at(peers: pd.DataFrame, nbytes: float, metric: str) -> float:
    """The peer's metric interpolated at ``nbytes`` (linear in log bytes; NaN outside its range)."""
    p = peers.sort_values("bytes")
    x, y = np.log(p["bytes"].to_numpy(float)), p[metric].to_numpy(float)
    t = math.log(nbytes)
    if t < x[0] or t > x[-1]:
        return float("nan")
    return float(np.interp(t, x, y))


def reference_rows(name: str, shapes: list[str], peers: pd.DataFrame, floor_cd: float) -> list[dict]:
    """NeCGS rows of an earlier bench_rd.py run on exactly these shapes, compared with this run's peers."""
    summary = pd.read_csv(RESULTS / name / "summary.csv")
    per = pd.read_csv(RESULTS / name / "per_shape.csv")
    if sorted(per[per.codec == "necgs"]["shape"].unique()) != sorted(shapes):
        raise SystemExit(f"{name} was run on other shapes")
    out = []
    for _, r in summary[(summary.codec == "necgs") & (summary.status == "ok")].iterrows():
        cds = per[(per.codec == "necgs") & (per.label == r.label)].cd
        out.append(
            {
                "variant": f"{r.label} (set-trained, {name})",
                "bytes": int(r.bytes),
                "ratio_ply": r.ratio_ply,
                "cd_mean": r.cd,
                "cd_median": float(cds.median()),
                "empty": int((~np.isfinite(cds)).sum()),
                "f1_005": r.f1_005,
                "encode_s": r.encode_s,
                "decode_ms_per_shape": r.decode_ms_per_shape,
                "peer_cd_at_bytes": peer_at(peers, r.bytes, "cd"),
                "peer_f1_at_bytes": peer_at(peers, r.bytes, "f1_005"),
                "floor_cd": floor_cd,
            }
        )
    return out


def single_shape(prior, mesh, set_cd: float | None, fine_tune: int = 0) -> dict:
    """One mesh alone against ``prior``: seconds, bytes, CD (and the set-trained CD of the same shape)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.ncgs"
        t = time.perf_counter()
        cpu = time.process_time()
        r = compress([mesh], path, prior=prior, prior_fit=PriorFitConfig(fine_tune_steps=fine_tune))
        cpu = time.process_time() - cpu
        seconds = time.perf_counter() - t
        t = time.perf_counter()
        decoded = decompress(path, prior=prior, device="cpu")[0]
        decode_s = time.perf_counter() - t
    m = compare_meshes(decoded, mesh, 100_000)
    return {
        "prior": prior.name,
        "fine_tune_steps": fine_tune,
        "shape": mesh.name,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "decode_s": decode_s,
        "bytes": r.bytes,
        "ratio_ply": binary_ply_bytes(mesh) / r.bytes,
        "cd": m.cd,
        "f1_005": m.f1_005,
        "set_trained_cd": set_cd,
        "cd_vs_set_trained": m.cd / set_cd if set_cd else None,
        "notes": r.notes,
    }


def earlier_set_cd(path: str | None, shape: str) -> float | None:
    """The set-trained CD of ``shape`` recorded in an earlier run's single rows, if any."""
    if not path:
        return None
    for row in json.loads(Path(path).read_text()).get("single", []):
        if row.get("shape") == shape and row.get("set_trained_cd"):
            return float(row["set_trained_cd"])
    return None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dataset", help="a set, or set/sub-folder (humans_ama/samba)")
    p.add_argument("--priors", nargs="+", required=True, help="prior names or paths")
    p.add_argument("--shapes", type=int, default=16)
    p.add_argument("--set-trained", help="also train NeCGS on the set with this preset (e.g. standard)")
    p.add_argument("--set-width", default="small")
    p.add_argument(
        "--reference",
        help="instead of --set-trained: a bench_rd.py results folder on the same shapes",
    )
    p.add_argument("--single", type=int, nargs="*", default=[], help="indices of shapes to compress alone")
    p.add_argument(
        "--fine-tune", type=int, default=0, metavar="STEPS", help="also each prior with a fine-tuned decoder delta"
    )
    p.add_argument(
        "--delta-multiples",
        type=int,
        nargs="+",
        help="with --fine-tune: also these delta steps (in steps of the prior's grid; the default is 4)",
    )
    p.add_argument(
        "--lambda-rates",
        type=float,
        nargs="+",
        help="with --fine-tune: also these weights of the fine-tuning's rate term (lambda_R; default 0.5), at every "
        "delta step",
    )
    p.add_argument(
        "--set-cd-from",
        help="with --single and no set-trained run: an earlier prior_<tag>.json whose single rows hold the "
        "set-trained CD of the same shapes",
    )
    p.add_argument("--tag", required=True)
    args = p.parse_args()

    loaded = evenly_spaced(args.dataset, args.shapes)
    _, label = resolve_source(args.dataset)
    priors = [find_prior(x) for x in args.priors]
    for prior in priors:
        check_held_out(prior, label, [m.name for m in loaded.meshes])
    settings = [{"prior": str(prior.path)} for prior in priors]
    if args.fine_tune:
        settings += [
            {"prior": str(prior.path), "fine_tune": args.fine_tune}
            | ({"delta_multiple": m} if m else {})
            | ({"lambda_rate": lam} if lam is not None else {})
            for prior in priors
            for m in [None, *(args.delta_multiples or [])]
            for lam in [None, *(args.lambda_rates or [])]
        ]
    if args.set_trained:
        settings.append({"preset": args.set_trained, "width": args.set_width})
    t0 = time.time()
    result = evaluate(
        loaded,
        ["necgs", "decimate-draco"],
        settings={"necgs": settings, "decimate-draco": PEER_SWEEP},
        progress=lambda stage, frac: print(f"[{100 * frac:5.1f}%] {time.time() - t0:6.0f}s {stage}", flush=True),
    )
    s = result.summary
    peers = s[(s.codec == "decimate-draco") & (s.status == "ok")]
    floor = s[s.codec == "floor"].iloc[0]
    rows = []
    for _, r in s[(s.codec == "necgs") & (s.status == "ok")].iterrows():
        per = result.per_shape[(result.per_shape.codec == "necgs") & (result.per_shape.label == r.label)]
        rows.append(
            {
                "variant": r.label,
                "bytes": int(r.bytes),
                "ratio_ply": r.ratio_ply,
                "cd_mean": r.cd,
                "cd_median": float(per.cd.median()),
                "empty": int((~np.isfinite(per.cd)).sum()),
                "f1_005": r.f1_005,
                "encode_s": r.encode_s,
                "decode_ms_per_shape": r.decode_ms_per_shape,
                "peer_cd_at_bytes": peer_at(peers, r.bytes, "cd"),
                "peer_f1_at_bytes": peer_at(peers, r.bytes, "f1_005"),
                "floor_cd": floor.cd,
            }
        )
    if args.reference:
        rows += reference_rows(args.reference, [m.name for m in loaded.meshes], peers, floor.cd)
    table = pd.DataFrame(rows)
    singles = []
    set_rows = result.per_shape[result.per_shape.label.str.startswith(str(args.set_trained or "-"))]
    if args.reference:
        ref = pd.read_csv(RESULTS / args.reference / "per_shape.csv")
        set_rows = ref[ref.codec == "necgs"]
    for i in args.single:
        mesh = loaded.meshes[i]
        hit = set_rows[set_rows["shape"] == mesh.name]
        set_cd = float(hit.cd.iloc[0]) if len(hit) else earlier_set_cd(args.set_cd_from, mesh.name)
        for prior in priors:
            for steps in sorted({0, args.fine_tune}):
                singles.append(single_shape(prior, mesh, set_cd, steps))
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / f"prior_{args.tag}.csv", index=False)
    write_json(
        f"prior_{args.tag}",
        {
            "args": vars(args),
            "dataset": label,
            "shapes": [m.name for m in loaded.meshes],
            "priors": [{"name": x.name, "id": x.id, "trained_on": x.card.get("trained_on")} for x in priors],
            "necgs": rows,
            "single": singles,
            "summary": s.drop(columns=["setting"], errors="ignore").to_dict("records"),
            "wall_seconds": time.time() - t0,
        },
    )
    print(table.to_string(index=False))
    if singles:
        print(pd.DataFrame(singles).to_string(index=False))


if __name__ == "__main__":
    main()
