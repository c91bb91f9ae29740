"""How many training steps the auto-decoder needs: CD, F1 and loss against steps and wall time.

For each (K, width) the same shapes are trained from scratch with doubling step budgets
(each run has its own full warm-up + cosine schedule, as a user's run would) until doubling
the steps gains less than ``--stop-gain`` of mean CD, or the largest budget is reached.
Dense training (the paper's) is the reference; ``--mode patch`` reruns the study on block
training with the same shapes, so the two curves can be put side by side.

Usage:
    python benchmarks/bench_convergence.py --mode dense --resolutions 32 64 --widths 8 12
    python benchmarks/bench_convergence.py --mode patch --tag patch_b16 --block-size 16
    python benchmarks/bench_convergence.py --merge dense_k64 dense_k64_long patch_b8_k64 --tag k64_all

Writes benchmarks/results/convergence_<tag>.{json,csv} and convergence_<tag>.html (figure);
``--merge`` draws the rows of earlier runs (same shapes and samples) in one figure instead.
Fitted volumes come from the fitting cache (fit once, reused by every run).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import pandas as pd
import torch

from necgs.config import FitConfig, TrainConfig
from necgs.geometry.dmc import mesh_from_volume
from necgs.geometry.fit import fit_volumes
from necgs.metrics import compare_meshes, sampling_floor
from necgs.model.decoder import decoder_config
from necgs.training.train import train_autodecoder

from _common import RESULTS, evenly_spaced, write_json


def decode_metrics(codec, fitted, meshes, samples: int) -> dict:
    """Decode every shape (dense) and score it against its original mesh."""
    decoder = codec.decoder("cpu")
    features = codec.features.value()
    cds, f1s, empty = [], [], 0
    t = time.perf_counter()
    for i, mesh in enumerate(meshes):
        with torch.no_grad():
            volume = decoder(features[i : i + 1])[0]
        rec = mesh_from_volume(volume, mesh.name).transformed(fitted.transforms[i], inverse=True)
        m = compare_meshes(rec, mesh, samples)
        empty += int(not math.isfinite(m.cd))
        cds.append(m.cd)
        f1s.append(m.f1_005)
    cd = np.array(cds)
    finite = cd[np.isfinite(cd)]
    return {
        "cd_mean": float(cd.mean()),
        "cd_median": float(np.median(cd)),
        "cd_mean_finite": float(finite.mean()) if len(finite) else float("inf"),
        "f1_005": float(np.mean(f1s)),
        "empty": empty,
        "decode_s": time.perf_counter() - t,
    }


def train_config(args, steps: int, n: int) -> TrainConfig:
    """The training settings of one budget: epochs chosen so the run has ``steps`` steps."""
    per_epoch = max(math.ceil(n / args.batch), 1)
    tcfg = TrainConfig(
        epochs=max(steps // per_epoch, 1),
        lr=args.lr,
        batch_size=args.batch,
        device="cpu",
        checkpoint_every=0,
        mode=args.mode,
        block_size=args.block_size,
        blocks_per_shape=args.blocks,
        band_fraction=args.band,
        feature_lr_scale=args.feature_lr_scale,
    )
    return tcfg.validate()


def study(args, loaded, K: int, width: int, floor: dict) -> list[dict]:
    """Doubling budgets for one (K, width) until the CD gain of a doubling is below the stop gain."""
    fitted = fit_volumes(loaded.meshes, FitConfig(resolution=K, iterations=args.fit_iterations), progress=False)
    dcfg = decoder_config(K, width, feature_channels=8)
    rows: list[dict] = []
    steps = args.first_steps
    while steps <= args.max_steps:
        tcfg = train_config(args, steps, len(loaded.meshes))
        torch.manual_seed(0)
        codec = train_autodecoder(fitted.volumes, dcfg, tcfg, progress=False)
        real_steps = tcfg.epochs * max(math.ceil(len(loaded.meshes) / tcfg.batch_size), 1)
        row = {
            "mode": args.mode,
            "K": K,
            "width": width,
            "steps": real_steps,
            "epochs": tcfg.epochs,
            "train_s": codec.seconds,
            "s_per_step": codec.seconds / real_steps,
            "final_loss": codec.losses[-1],
            "decoder_params": sum(int(np.prod(q.shape)) for q in codec.weights.values()),
            **decode_metrics(codec, fitted, loaded.meshes, args.samples),
            "floor_cd": floor["cd"],
            "floor_f1_005": floor["f1_005"],
        }
        rows.append(row)
        print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        if len(rows) >= 2 and rows[-2]["cd_mean"] > 0 and math.isfinite(rows[-2]["cd_mean"]):
            gain = (rows[-2]["cd_mean"] - rows[-1]["cd_mean"]) / rows[-2]["cd_mean"]
            if math.isfinite(rows[-1]["cd_mean"]) and gain < args.stop_gain:
                break
        steps *= 2
    return rows


def figure(df: pd.DataFrame, path) -> None:
    """CD against steps and against wall time, one line per (mode, K, width)."""
    import plotly.express as px
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean CD vs training steps", "mean CD vs training wall time"))
    palette = px.colors.qualitative.Plotly
    for k, ((mode, K, w), g) in enumerate(df.groupby(["mode", "K", "width"])):
        name, line = f"{mode} K={K} w={w}", {"color": palette[k % len(palette)]}
        fig.add_scatter(x=g["steps"], y=g["cd_mean_finite"], mode="lines+markers", name=name, line=line, row=1, col=1)
        fig.add_scatter(
            x=g["train_s"],
            y=g["cd_mean_finite"],
            mode="lines+markers",
            name=name,
            line=line,
            showlegend=False,
            row=1,
            col=2,
        )
    floor = float(df["floor_cd"].iloc[0])
    fig.add_hline(y=floor, line_dash="dot", annotation_text="sampling floor", annotation_position="top left")
    top = float(df["cd_mean_finite"].replace(math.inf, math.nan).max())
    fig.update_xaxes(type="log", title_text="steps", row=1, col=1)
    fig.update_xaxes(type="log", title_text="seconds (one shared core per run)", row=1, col=2)
    y_range = [math.log10(0.8 * floor), math.log10(1.3 * top)]
    fig.update_yaxes(type="log", title_text="CD (finite shapes)", range=y_range)
    fig.update_layout(height=450, width=1100, legend={"orientation": "h", "y": -0.25})
    fig.write_html(path, include_plotlyjs="cdn")


def merge(tags: list[str], tag: str) -> None:
    """One figure and CSV of the rows of earlier runs ``convergence_<tag>.json``."""
    df = pd.concat(pd.DataFrame(json.loads((RESULTS / f"convergence_{t}.json").read_text())["rows"]) for t in tags)
    df = df.sort_values(["mode", "K", "width", "steps"])
    df.to_csv(RESULTS / f"convergence_{tag}.csv", index=False)
    figure(df, RESULTS / f"convergence_{tag}.html")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="humans_ama")
    p.add_argument("--shapes", type=int, default=8)
    p.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    p.add_argument("--widths", type=int, nargs="+", default=[8, 12])
    p.add_argument("--mode", choices=["dense", "patch"], default="dense")
    p.add_argument("--tag", default=None, help="results name (default: the mode)")
    p.add_argument("--first-steps", type=int, default=250)
    p.add_argument("--max-steps", type=int, default=4000)
    p.add_argument("--stop-gain", type=float, default=0.03)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--batch", type=int, default=4, help="shapes per step")
    p.add_argument("--block-size", type=int, default=8)
    p.add_argument("--blocks", type=int, default=16, help="blocks per shape and step (patch mode)")
    p.add_argument("--band", type=float, default=0.85)
    p.add_argument("--feature-lr-scale", type=float, default=10.0)
    p.add_argument("--fit-iterations", type=int, default=100)
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--merge", nargs="+", metavar="TAG", help="only draw these runs' rows in one figure (--tag)")
    args = p.parse_args()

    tag = args.tag or args.mode
    if args.merge:
        merge(args.merge, tag)
        return
    loaded = evenly_spaced(args.dataset, args.shapes)
    floors = [sampling_floor(m, args.samples) for m in loaded.meshes]
    floor = {"cd": float(np.mean([f.cd for f in floors])), "f1_005": float(np.mean([f.f1_005 for f in floors]))}
    rows: list[dict] = []
    for K in args.resolutions:
        for w in args.widths:
            rows += study(args, loaded, K, w, floor)
            df = pd.DataFrame(rows)
            df.to_csv(RESULTS / f"convergence_{tag}.csv", index=False)
            write_json(f"convergence_{tag}", {"args": vars(args), "floor": floor, "rows": rows})
            figure(df, RESULTS / f"convergence_{tag}.html")


if __name__ == "__main__":
    main()
