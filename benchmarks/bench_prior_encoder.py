"""Does a prior need an encoder? Auto-encoder vs auto-decoder priors on held-out shapes (issue #16).

Both arms train the same decoder on the same training shapes for the same steps (patch
training, the presets' band loss). The auto-encoder arm's features come from a
``VolumeEncoder`` of the volume pooled to 16^3, trained jointly. On the held-out shapes each
arm starts their features (auto-encoder: its encoder; auto-decoder: the mean training
feature), is scored, then fits the features against the frozen decoder for ``--visits``
updates per shape (``fit_features``, the ``compress --prior`` path) and is scored again.
CD and F1@0.005 at 100k samples; the training shapes' own decode is scored on 8 of them.

Features are fitted at ``compress --prior``'s learning rate (0.04 x the standard deviation
of the trained features); result files before 2026-11-26 used 5e-2 for both arms, which the
encoder arm's 40x smaller features cannot take (its fitted CD there is too high).
``--features CxK'`` sets each feature's channels and side (default 8x4, the shipped priors');
the feature bytes per shape are the rate model's estimate (one Laplace per channel over the
held-out batch, as the archive codes them).

Usage:
    python benchmarks/bench_prior_encoder.py --train humans_ama/crane --test humans_ama/samba \\
        --shapes 16 --steps 3000 --width small --visits 150
    python benchmarks/bench_prior_encoder.py --arms encoder --features 4x8 --tag crane_samba16_f4x8

Writes benchmarks/results/prior_encoder_<tag>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from necgs.coding.bit_estimate import feature_bits
from necgs.config import BAND_LOSS, FitConfig, PriorFitConfig, TrainConfig
from necgs.geometry.dmc import mesh_from_volume
from necgs.geometry.fit import FittedSet, fit_volumes
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import load_meshes
from necgs.metrics import compare_meshes
from necgs.model.decoder import decoder_config
from necgs.model.encoder import VolumeEncoder
from necgs.training.features import fit_features
from necgs.training.train import train_autodecoder

from _common import write_json

ENCODER_INPUT = 16


@torch.no_grad()
def score(decoder, features: torch.Tensor, fitted, meshes) -> dict:
    """Mean / median CD (finite shapes), F1@0.005 and empty count of decoded ``features``."""
    cds, f1s = [], []
    for i, mesh in enumerate(meshes):
        rec = mesh_from_volume(decoder(features[i : i + 1])[0]).transformed(fitted.transforms[i], inverse=True)
        m = compare_meshes(rec, mesh, 100_000)
        cds.append(m.cd)
        f1s.append(m.f1_005)
    cd = np.array(cds)
    finite = cd[np.isfinite(cd)]
    return {
        "cd_mean": float(finite.mean()) if len(finite) else None,
        "cd_median": float(np.median(cd)),
        "f1_005": float(np.mean(f1s)),
        "empty": int((~np.isfinite(cd)).sum()),
    }


@dataclass
class Shapes:
    """Meshes and their fitted K = 64 volumes."""

    meshes: list
    fitted: FittedSet


def run_arm(arm: str, train: Shapes, test: Shapes, args) -> dict:
    """Train one arm on ``train`` and score its start and fitted features on ``test``."""
    n = len(train.meshes)
    channels, side = args.channels, args.side
    dcfg = decoder_config(64, args.width, channels, side)
    tcfg = TrainConfig(mode="patch", device="cpu", epochs=max(args.steps // math.ceil(n / 4), 1), **BAND_LOSS)
    torch.manual_seed(0)
    t = time.perf_counter()
    codec = train_autodecoder(
        train.fitted.volumes, dcfg, tcfg, progress=False, autoencoder=arm == "encoder", encoder_input=ENCODER_INPUT
    )
    train_s = time.perf_counter() - t
    decoder = codec.decoder()
    if codec.encoder is not None:
        encoder = VolumeEncoder(64, side, channels, input_resolution=ENCODER_INPUT)
        encoder.load_state_dict(codec.encoder)
        with torch.no_grad():
            start = torch.cat([encoder(test.fitted.volumes[i : i + 8]) for i in range(0, len(test.meshes), 8)])
    else:
        start = codec.features.value().mean(0, keepdim=True).expand(len(test.meshes), -1, -1, -1, -1).clone()
    fcfg = TrainConfig(
        epochs=args.visits,
        lr=PriorFitConfig.lr_per_std * float(codec.features.value().std()),  # the compress --prior rule
        feature_lr_scale=1.0,
        batch_size=16,
        blocks_per_shape=16,
        block_size=8,
        mode="patch",
        checkpoint_every=0,
        device="cpu",
        weight_bits=tcfg.weight_bits,
        feature_bits=tcfg.feature_bits,
        **BAND_LOSS,
    )
    t = time.perf_counter()
    fitted = fit_features(codec, test.fitted.volumes, fcfg, init=start)
    fit_s = time.perf_counter() - t
    return {
        "arm": arm,
        "features": f"{channels}x{side}",
        "feature_bytes_per_shape": round(float(feature_bits(fitted.value(), fitted.spec)) / 8 / len(test.meshes), 1),
        "train_s": round(train_s, 1),
        "final_loss": codec.losses[-1],
        "train_own": score(decoder, codec.features.value()[:8], train.fitted, train.meshes[:8]),
        "test_start": score(decoder, start, test.fitted, test.meshes),
        "fit_s": round(fit_s, 1),
        "test_fitted": score(decoder, fitted.value(), test.fitted, test.meshes),
    }


def fitted_set(name: str, shapes: int | None) -> Shapes:
    """The set's meshes (evenly spaced ``shapes`` of them) and their fitted K = 64 volumes."""
    meshes = load_meshes(resolve_dataset(name)).meshes
    if shapes:
        meshes = meshes[:: max(len(meshes) // shapes, 1)][:shapes]
    return Shapes(meshes, fit_volumes(meshes, FitConfig(resolution=64, iterations=30, samples=10_000), progress=False))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default="humans_ama/crane")
    p.add_argument("--test", default="humans_ama/samba")
    p.add_argument("--shapes", type=int, default=16, help="evenly spaced held-out shapes")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--width", default="small")
    p.add_argument("--visits", type=int, default=150)
    p.add_argument("--features", default="8x4", help="CxK': channels and side of each feature")
    p.add_argument("--arms", nargs="+", choices=("encoder", "mean feature"), default=["encoder", "mean feature"])
    p.add_argument("--tag", default="crane_samba16")
    args = p.parse_args()
    try:
        args.channels, args.side = (int(v) for v in args.features.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--features must be CxK' (e.g. 8x4), got {args.features!r}") from None
    torch.set_num_threads(1)
    train, test = fitted_set(args.train, None), fitted_set(args.test, args.shapes)
    rows = []
    for arm in args.arms:
        rows.append(run_arm(arm, train, test, args))
        print(json.dumps(rows[-1]), flush=True)
        write_json(f"prior_encoder_{args.tag}", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
