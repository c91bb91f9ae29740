"""Weights-section bytes under context-adaptive models (issue #14), from archives' own symbols.

Reads each archive's weight symbols through the library (``open_archive().weights()``, each chunk
of the weights section with ``read_chunk``) and gives the section's bytes if its convolution kernels
were coded with each model below (other tensors keep today's chunks). Except today's section every
number is an ideal code length plus side information as in the issue's study: 6 B of framing per
kernel (tag, payload length, coder flush) and the model's own parameters. Methods:

- today, and today ideal (today's per-tensor models plus their ideal payloads).
- static categorical per kernel, its counts serialized (rans model).
- Gaussian per output channel: zero-mean, discretized, one 1-byte sigma per channel (+2 B).
- adaptive Dirichlet(0.25) counts per context: none, previous symbol's magnitude class, kernel tap,
  output channel; contexts restart per kernel or run on across ups.*, whichever is smaller.
- DeepCABAC: significance, sign and truncated-unary |q| > j bins, contexts from the previous symbol
  and the same tap of the previous output channel; adaptive binary counts, VVC's dual-rate estimator.
- linear prediction from earlier output channels of each pixel-shuffle group (ridge fit, 1-byte
  coefficients), discretized Gaussian residual with one 1-byte sigma per kernel.

Usage: python benchmarks/bench_weight_contexts.py ARCHIVE [ARCHIVE...] [--name weight_contexts_ama8]
Writes benchmarks/results/<name>.json (per archive: weight bits, symbols and, per method, bytes and
% against today's section) and prints the table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import gammaln, ndtr

from necgs.coding.entropy import build_model
from necgs.coding.laplace import LaplaceModel
from necgs.coding.streams import AnyModel, encode_stream, read_chunk
from necgs.compression import open_archive

from _common import write_json

#: Bytes per kernel coded by a new method: tag, varint payload length, coder flush.
FRAME = 6
#: Contexts of the adaptive categorical models.
CONTEXTS = ("no context", "previous magnitude", "kernel tap", "output channel")
PMIN = 2.0**-20


@dataclass
class Kernel:
    """A convolution kernel's symbols and what today's section spends on it."""

    name: str
    half: int  # R: signed symbols are -R .. R
    x: np.ndarray  # (O, I, 3, 3, 3) signed symbols
    today_ideal: float  # bytes: today's model plus its ideal payload


def payload_bits(symbols: np.ndarray, model: AnyModel) -> float:
    """Ideal payload bits of ``symbols`` under today's model (Huffman and raw: their real payload)."""
    s = symbols.astype(np.int64)
    if isinstance(model, LaplaceModel):
        p = model.group_probabilities()[np.repeat(np.arange(model.groups), s.size // model.groups), s]
    elif model.coder == "rans":
        p = model.counts[s - model.offset] / model.counts.sum()
    else:
        return 8.0 * len(encode_stream(s, model))
    return float(-np.log2(p).sum())


def read_weights(path: str) -> tuple[dict, list[Kernel]]:
    """An archive's weight bits, symbol count, section bytes, bytes of non-kernel chunks; its kernels."""
    arc = open_archive(path)
    layout = arc.reader.section_info("weights").info.get("layout")
    if layout != "tensors":
        raise SystemExit(f"{path}: weights layout {layout!r}; this benchmark needs one chunk per tensor")
    weights, data = arc.weights(), arc.reader.read_section("weights")
    pos, other, kernels = 0, 0, []
    for name in arc.metadata["weights"]["order"]:
        q, start = weights[name], pos
        symbols, model, pos = read_chunk(data, pos, q.symbols.size)
        if len(q.shape) != 5:
            other += pos - start
            continue
        half = 2 ** (q.spec.bits - 1)
        x = (symbols.astype(np.int64) - half).reshape(q.shape)
        kernels.append(Kernel(name, half, x, len(model.to_bytes()) + payload_bits(symbols, model) / 8))
    bits, symbols = max(q.spec.bits for q in weights.values()), sum(q.symbols.size for q in weights.values())
    return {"bits": bits, "symbols": symbols, "section_bytes": len(data), "other_bytes": other}, kernels


def dirichlet_bits(s: np.ndarray, ctx: np.ndarray, alphabet: int, alpha: float) -> float:
    """Code length of adaptive Dirichlet(alpha) counts per context (closed form, order-free)."""
    _, c = np.unique(ctx, return_inverse=True)
    counts = np.bincount(c * alphabet + s, minlength=(c.max() + 1) * alphabet).reshape(-1, alphabet)
    n = counts.sum(1)
    nats = (gammaln(n + alphabet * alpha) - gammaln(alphabet * alpha)).sum()
    return float((nats - (gammaln(counts + alpha) - gammaln(alpha)).sum()) / np.log(2))


def gaussian_bits(q: np.ndarray, mu: np.ndarray, half: int, groups: int) -> float:
    """Bits of signed ``q`` (-R .. R) under discretized Gaussians around ``mu`` (the ends take the tails).

    Per group of consecutive symbols, the best sigma on a 2^(1/8) grid within half an octave of the RMS.
    """
    q, mu = q.reshape(groups, 1, -1), mu.reshape(groups, 1, -1)
    centre = np.log2(np.sqrt(((q - mu) ** 2).mean(2)) + 1e-3)  # (G, 1)
    codes = np.floor(8 * centre + 64) + np.arange(-4, 6)  # (G, 10) candidate sigma codes
    sigma = 2.0 ** (codes / 8 - 8)
    hi = np.where(q >= half, np.inf, q + 0.5)
    lo = np.where(q <= -half, -np.inf, q - 0.5)
    p = ndtr((hi - mu) / sigma[..., None]) - ndtr((lo - mu) / sigma[..., None])
    bits = -np.log2(np.maximum(p, PMIN)).sum(2)
    return float(np.where(np.abs(codes / 8 - 8 - centre) < 0.5, bits, np.inf).min(1).sum())


def categorical_bytes(k: Kernel) -> float:
    """One static categorical model per kernel, its counts serialized as side information."""
    s = (k.x + k.half).reshape(-1)
    c = np.bincount(s)
    c = c[c > 0]
    return -(c * np.log2(c / c.sum())).sum() / 8 + len(build_model(s, "rans").to_bytes()) + FRAME


def channel_gaussian_bytes(k: Kernel) -> float:
    """A zero-mean discretized Gaussian per output channel (1 B sigma each, 2 B header)."""
    q = k.x.reshape(-1).astype(float)
    return gaussian_bits(q, np.zeros_like(q), k.half, k.x.shape[0]) / 8 + k.x.shape[0] + 2 + FRAME


def contexts(x: np.ndarray) -> dict[str, np.ndarray]:
    """Context of every symbol (row-major order) for each entry of :data:`CONTEXTS`."""
    out_ch, in_ch = x.shape[:2]
    magnitude = np.digitize(np.abs(x.reshape(-1)[:-1]), [1, 2, 3, 5, 9, 17])  # 0, 1, 2, <=4, <=8, <=16, more
    return {
        "no context": np.zeros(x.size, np.int64),
        "previous magnitude": np.r_[7, magnitude],
        "kernel tap": np.tile(np.arange(27), out_ch * in_ch),
        "output channel": np.repeat(np.arange(out_ch), in_ch * 27),
    }


def adaptive_bits(kernels: list[Kernel], context: str, shared: bool) -> float:
    """Adaptive Dirichlet(0.25) code length per context, restarting per kernel or run on across ups.*."""
    runs: dict[str, list[Kernel]] = {}
    for k in kernels:
        runs.setdefault("ups" if shared and k.name.startswith("ups.") else k.name, []).append(k)
    total = 0.0
    for ks in runs.values():
        s = np.concatenate([(k.x + k.half).reshape(-1) for k in ks])
        ctx = np.concatenate([contexts(k.x)[context] for k in ks])
        total += dirichlet_bits(s, ctx, 2 * ks[0].half + 1, 0.25)
    return total


def deepcabac_bins(k: Kernel) -> tuple[np.ndarray, np.ndarray]:
    """DeepCABAC-style bins of a kernel and their contexts, each context's bins in symbol order."""
    up = np.concatenate([np.zeros_like(k.x[:1]), k.x[:-1]]).reshape(-1)  # same tap, previous output channel
    q = k.x.reshape(-1)
    prev, a = np.r_[0, q[:-1]], np.abs(q)
    sig = (up != 0) + 2 * (prev != 0)
    sign = 4 + 3 * (np.sign(up) + 1) + np.sign(prev) + 1
    activity = np.digitize(np.abs(up) + np.abs(prev), [1, 3, 6, 10, 16])
    bins, ctx = [a > 0, q[a > 0] > 0], [sig, sign[a > 0]]
    for j in range(1, k.half):  # |q| > j, coded while |q| >= j; |q| <= R ends the unary code
        bins.append(a[a >= j] > j)
        ctx.append(16 + 8 * j + activity[a >= j])
    return np.concatenate(bins).astype(np.int64), np.concatenate(ctx)


def cabac_bits(bins: np.ndarray, ctx: np.ndarray) -> float:
    """Code length under VVC's dual-rate estimator (15-bit probabilities, shifts 4 and 7); sequential."""
    cost = (-np.log2(np.maximum(np.arange(1 << 15), 1) / 32768)).tolist()
    state: dict[int, tuple[int, int]] = {}
    total = 0.0
    for b, c in zip(bins.tolist(), ctx.tolist()):
        p0, p1 = state.get(c, (16384, 16384))
        p = min(max((p0 + p1) >> 1, 32), 32736)  # probability of a 1
        total += cost[p] if b else cost[32768 - p]
        target = 32768 if b else 0
        state[c] = (p0 + ((target - p0) >> 4), p1 + ((target - p1) >> 7))
    return total


def shifted(v: np.ndarray, axis: int, step: int) -> np.ndarray:
    """``v`` moved by ``step`` (+-1) along ``axis``, zero where nothing moved in."""
    out = np.roll(v, step, axis)
    np.moveaxis(out, axis, 0)[0 if step > 0 else -1] = 0
    return out


def sibling_features(x: np.ndarray) -> np.ndarray:
    """(F, n) predictors of every symbol from earlier output channels (none unless O is a multiple of 8)."""
    out_ch = x.shape[0]
    if out_ch % 8:
        return np.zeros((0, x.size))
    g = x.reshape(out_ch // 8, 8, *x.shape[1:])  # (group, sub-pixel j, I, z, y, x)
    j = np.arange(8)
    jshape = (1, 8) + (1,) * (g.ndim - 2)
    older = np.concatenate([np.zeros_like(x[:8]), x[:-8]])
    feats = [(np.cumsum(g, 1) - g) / np.maximum(j, 1).reshape(jshape), older]
    for bit, axis in ((1, 5), (2, 4), (4, 3)):
        sibling = np.where((j & bit).reshape(jshape) > 0, g[:, j ^ bit], 0.0)
        feats += [sibling, shifted(sibling, axis, 1), shifted(sibling, axis, -1)]
    return np.stack([f.reshape(-1) for f in feats])


def linear_prediction_bytes(k: Kernel) -> float:
    """Ridge prediction from earlier output channels, Gaussian residual (coefficients and sigma 1 B each)."""
    q = k.x.reshape(-1).astype(float)
    f = sibling_features(k.x.astype(float))
    f = f[np.abs(f).sum(1) > 0]
    coef = np.linalg.solve(f @ f.T + np.eye(len(f)), f @ q) if len(f) else np.zeros(0)
    mu = np.clip(np.round(coef * 64), -128, 127) / 64 @ f
    return gaussian_bits(q, mu, k.half, 1) / 8 + len(f) + 1 + FRAME


def method_bytes(info: dict, ks: list[Kernel]) -> dict[str, float]:
    """Bytes of the weights section under every method."""
    other, framing = info["other_bytes"], FRAME * len(ks)
    out = {"today": float(info["section_bytes"]), "today ideal": other + sum(k.today_ideal for k in ks)}
    out["static categorical/kernel"] = other + sum(categorical_bytes(k) for k in ks)
    out["Gaussian/output channel"] = other + sum(channel_gaussian_bytes(k) for k in ks)
    for c in CONTEXTS:
        out[f"adaptive: {c}"] = other + min(adaptive_bits(ks, c, s) for s in (False, True)) / 8 + framing
    bins = [deepcabac_bins(k) for k in ks]
    out["DeepCABAC, adaptive counts"] = other + sum(dirichlet_bits(b, c, 2, 0.5) for b, c in bins) / 8 + framing
    out["DeepCABAC, CABAC estimator"] = other + sum(cabac_bits(b, c) for b, c in bins) / 8 + framing
    out["linear prediction"] = other + sum(linear_prediction_bytes(k) for k in ks)
    return out


def print_table(results: dict[str, dict]) -> None:
    """Methods down, archives across: bytes and % against today."""
    names = list(results)
    print(f"{'method':30s}" + "".join(f"{Path(n).name:>20s}" for n in names))
    for m in results[names[0]]["methods"]:
        cells = [results[n]["methods"][m] for n in names]
        print(f"{m:30s}" + "".join(f"{c['bytes']:12.0f} {c['vs_today_pct']:+6.2f}%" for c in cells))


def main() -> None:
    p = argparse.ArgumentParser(description="Weights-section bytes under context-adaptive models.")
    p.add_argument("archives", nargs="+")
    p.add_argument("--name", default="weight_contexts_ama8")
    args = p.parse_args()
    results = {}
    for path in args.archives:
        info, kernels = read_weights(path)
        today = info["section_bytes"]
        sizes = method_bytes(info, kernels)
        info["methods"] = {m: {"bytes": b, "vs_today_pct": 100 * (b / today - 1)} for m, b in sizes.items()}
        results[path] = info
    out = write_json(args.name, {"args": vars(args), "archives": results})
    print_table(results)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
