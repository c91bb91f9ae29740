"""Which patch-training settings train best per step and per second (issue #13, point 4).

Each named setting trains the same evenly spaced shapes from scratch for the same number of
steps (one torch thread), then every shape is decoded densely and scored against its mesh.
The settings are TrainConfig overrides on top of patch training at lr 5e-3; the keys
``feature_channels`` and ``feature_resolution`` set the embedded feature's size instead
(default 8 x 4^3), ``tied_modules`` ties the decoder's first upsampling modules and ``width``
replaces ``--width``. Each row also has the coded decoder and feature bytes, so settings that
change the size can be compared at equal bytes.

Usage:
    python benchmarks/bench_patch_settings.py --shapes 24 --steps 1000 \\
        --setting b16x4 '{"block_size": 16, "blocks_per_shape": 4}' \\
        --setting b8x16 '{"block_size": 8, "blocks_per_shape": 16}'
    python benchmarks/bench_patch_settings.py --K 32 --setting dense '{"mode": "dense"}'
    python benchmarks/bench_patch_settings.py --shapes 8 --steps 2000 --width 8 \
        --setting c16 '{"feature_channels": 16}' --setting r8 '{"feature_resolution": 8}'
    python benchmarks/bench_patch_settings.py --width 10 --fit-iterations 50 --fit-samples 10000 \
        --setting band '{"lambda1": 100, "tau": 0.5, "lambda2": 2}'

``--references`` first writes two rows no setting can beat: the fitted volumes decoded as they
are (the representation's ceiling at this K) and the metric floor (each mesh against itself).

Appends one JSON line per setting to benchmarks/results/patch_settings.jsonl (``--out NAME``:
NAME.jsonl instead, with the figure NAME.html of every row in it: CD and F1 against the coded bytes).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace

import numpy as np
import torch

from necgs.coding.sections import feature_sections, weight_sections
from necgs.config import FitConfig, TrainConfig
from necgs.geometry.dmc import mesh_from_volume
from necgs.geometry.fit import fit_volumes
from necgs.metrics import compare_meshes
from necgs.model.decoder import decoder_config
from necgs.training.train import train_autodecoder

from _common import RESULTS, evenly_spaced, machine
from bench_convergence import decode_metrics

FEATURE_KEYS = ("feature_channels", "feature_resolution", "tied_modules")
DECODER_KEYS = (*FEATURE_KEYS, "width")


def coded_bytes(codec) -> dict:
    """Entropy-coded decoder and feature bytes (the archive's sections, coder "auto")."""
    _, weights = weight_sections(codec.weights, "auto")
    _, features = feature_sections(codec.features, 0, "auto")
    return {"weights_bytes": len(weights.data), "feature_bytes": sum(len(s.data) for s in features)}


@torch.no_grad()
def channel_swaps(codec, fitted, meshes, samples: int) -> dict:
    """Mean CD with decoded channels swapped for the fitted ones: which channel limits the decode."""
    decoder, features = codec.decoder("cpu"), codec.features.value()
    cds: dict[str, list[float]] = {"decoded_tsdf_fitted_deform": [], "fitted_tsdf_decoded_deform": [], "fitted": []}
    band_error = []
    for i, mesh in enumerate(meshes):
        decoded, target = decoder(features[i : i + 1])[0], fitted.volumes[i]
        band_error.append(float((decoded[0] - target[0])[target[0].abs() < 1].abs().mean()))
        volumes = {
            "decoded_tsdf_fitted_deform": torch.cat([decoded[:1], target[1:]]),
            "fitted_tsdf_decoded_deform": torch.cat([target[:1], decoded[1:]]),
            "fitted": target,
        }
        for key, volume in volumes.items():
            rec = mesh_from_volume(volume, mesh.name).transformed(fitted.transforms[i], inverse=True)
            cds[key].append(compare_meshes(rec, mesh, samples).cd)
    return {f"cd_{k}": float(np.mean(v)) for k, v in cds.items()} | {"tsdf_band_error": float(np.mean(band_error))}


def train_setting(fitted, K: int, width, steps: int, overrides: dict, n: int):
    """The codec of one setting trained for about ``steps`` patch steps (whole epochs) on ``n`` fitted shapes."""
    feature = {"feature_channels": 8, **{k: overrides[k] for k in FEATURE_KEYS if k in overrides}}
    train = {k: v for k, v in overrides.items() if k not in DECODER_KEYS}
    width = overrides.get("width", width)
    tcfg = replace(TrainConfig(mode="patch", device="cpu", checkpoint_every=0), **train)
    per_epoch = math.ceil(n / tcfg.batch_size)
    tcfg = replace(tcfg, epochs=max(steps // per_epoch, 1)).validate()
    torch.manual_seed(0)
    return train_autodecoder(fitted.volumes, decoder_config(K, width, **feature), tcfg, progress=False)


def run_setting(loaded, fitted, K: int, width, steps: int, overrides: dict, samples: int, swaps: bool = False) -> dict:
    """Train one setting for ``steps`` steps and score its decoded shapes (``swaps``: and :func:`channel_swaps`)."""
    n = len(loaded.meshes)
    codec = train_setting(fitted, K, width, steps, overrides, n)
    m = decode_metrics(codec, fitted, loaded.meshes, samples)
    per_epoch = math.ceil(n / overrides.get("batch_size", TrainConfig().batch_size))
    return {
        "steps": len(codec.losses) * per_epoch,
        "train_s": round(codec.seconds, 1),
        **coded_bytes(codec),
        "final_loss": round(codec.losses[-1], 4),
        "cd_mean": m["cd_mean"],
        "cd_median": m["cd_median"],
        "f1_005": m["f1_005"],
        "empty": m["empty"],
        **(channel_swaps(codec, fitted, loaded.meshes, samples) if swaps else {}),
    }


def reference_rows(loaded, fitted, K: int, samples: int) -> list[dict]:
    """The rows no training can beat: the fitted volumes decoded as they are, and the metric floor.

    The floor compares each mesh with itself (two independent samplings), at the same sample
    count as the trained rows: fewer samples raise both the floor and every CD.
    """
    fitted_cd, fitted_f1, floor_cd, floor_f1 = [], [], [], []
    for i, mesh in enumerate(loaded.meshes):
        rec = mesh_from_volume(fitted.volumes[i], mesh.name).transformed(fitted.transforms[i], inverse=True)
        m = compare_meshes(rec, mesh, samples)
        fitted_cd.append(m.cd)
        fitted_f1.append(m.f1_005)
        f = compare_meshes(mesh, mesh, samples)
        floor_cd.append(f.cd)
        floor_f1.append(f.f1_005)
    return [
        {
            "name": f"fitted K={K}",
            "reference": True,
            "cd_mean": float(np.mean(fitted_cd)),
            "f1_005": float(np.mean(fitted_f1)),
        },
        {
            "name": "metric floor",
            "reference": True,
            "cd_mean": float(np.mean(floor_cd)),
            "f1_005": float(np.mean(floor_f1)),
        },
    ]


def figure(rows: list[dict], path, plotlyjs: str | bool = "cdn") -> None:
    """CD and F1@0.005 of each setting against its coded bytes (decoder + features), one point per row.

    ``plotlyjs``: as plotly's ``include_plotlyjs`` (True embeds the library, for offline rendering)."""
    import plotly.express as px  # heavy: only for the figure
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("CD mean (x1e-3)", "F1@0.005"))
    palette = px.colors.qualitative.Plotly
    trained = [r for r in rows if not r.get("reference")]
    span = [min(r["weights_bytes"] + r["feature_bytes"] for r in trained or [{"weights_bytes": 0, "feature_bytes": 0}])]
    span.append(max(r["weights_bytes"] + r["feature_bytes"] for r in trained) if trained else 1)
    for r in (r for r in rows if r.get("reference")):  # dotted lines across the trained rows' bytes
        for col, y in ((1, r["cd_mean"] * 1e3), (2, r["f1_005"])):
            fig.add_trace(
                go.Scatter(
                    x=span,
                    y=[y, y],
                    mode="lines+text",
                    text=[r["name"], ""],
                    textposition="bottom right",
                    name=r["name"],
                    showlegend=col == 1,
                    legendgroup=r["name"],
                    line={"dash": "dot", "color": "grey"},
                ),
                row=1,
                col=col,
            )
    for n, r in enumerate(trained):
        x = [r["weights_bytes"] + r["feature_bytes"]]
        colour = palette[n % len(palette)]
        hover = f"{r['name']}: {r['overrides']}, {r['train_s'] / 60:.1f} min"
        for col, y in ((1, r["cd_mean"] * 1e3), (2, r["f1_005"])):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[y],
                    mode="markers+text",
                    text=[r["name"]],
                    textposition="top center",
                    name=r["name"],
                    hovertext=[hover],
                    showlegend=col == 1,
                    legendgroup=r["name"],
                    marker={"color": colour},
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title="decoder + feature bytes")
    fig.update_layout(template="plotly_white", title=f"{path.stem}: each setting on the same shapes and steps")
    fig.write_html(path, include_plotlyjs=plotlyjs)


def study_arguments(doc: str, shapes: int, steps: int, width: str, fit_iterations: int, fit_samples: int):
    """The parser of a study on evenly spaced shapes of one set: the shapes, steps, K, width, fit, samples."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="humans_ama")
    p.add_argument("--shapes", type=int, default=shapes)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--K", type=int, default=64)
    p.add_argument("--width", default=width)
    p.add_argument("--samples", type=int, default=30_000, help="surface samples of each score")
    p.add_argument("--fit-iterations", type=int, default=fit_iterations, help="TSDF-Def fitting iterations per shape")
    p.add_argument("--fit-samples", type=int, default=fit_samples, help="surface samples per fitting iteration")
    return p


def study_shapes(args):
    """The study's meshes and their fitted volumes (one torch thread; the fitting cache is used)."""
    torch.set_num_threads(1)
    loaded = evenly_spaced(args.dataset, args.shapes)
    fit = FitConfig(resolution=args.K, iterations=args.fit_iterations, samples=args.fit_samples)
    return loaded, fit_volumes(loaded.meshes, fit, progress=False)


def main() -> None:
    p = study_arguments(__doc__, shapes=24, steps=1000, width="small", fit_iterations=100, fit_samples=20_000)
    p.add_argument("--channel-swaps", action="store_true", help="also score decoded/fitted channel swaps")
    p.add_argument("--setting", nargs=2, action="append", metavar=("NAME", "JSON"), default=[])
    p.add_argument(
        "--references", action="store_true", help="also write the fitted volumes' row and the metric floor's"
    )
    p.add_argument(
        "--out", default="", help="write NAME.jsonl and its figure NAME.html instead of patch_settings.jsonl"
    )
    args = p.parse_args()
    loaded, fitted = study_shapes(args)
    width = int(args.width) if args.width.isdigit() else args.width
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.out or 'patch_settings'}.jsonl"
    if args.references:
        for row in reference_rows(loaded, fitted, args.K, args.samples):
            append_row(path, row | {"dataset": args.dataset, "shapes": args.shapes, "K": args.K}, args.out)
    for name, text in args.setting:
        overrides = json.loads(text)
        row = {
            "name": name,
            "dataset": args.dataset,
            "shapes": args.shapes,
            "K": args.K,
            "width": overrides.get("width", args.width),  # the width this row trained
            "fit": {"iterations": args.fit_iterations, "samples": args.fit_samples},
            "overrides": overrides,
            **run_setting(loaded, fitted, args.K, width, args.steps, overrides, args.samples, args.channel_swaps),
            "machine": machine(),
        }
        append_row(path, row, args.out)


def append_row(path, row: dict, figure_too: bool) -> None:
    """Print ``row``, append it to the JSON lines at ``path`` and (``figure_too``) redraw their figure."""
    print(json.dumps(row), flush=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    if figure_too:
        figure([json.loads(line) for line in path.read_text().splitlines()], path.with_suffix(".html"))


if __name__ == "__main__":
    main()
