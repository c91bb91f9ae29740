"""Issue #30, "fewer decoder bytes": pruning and per-channel quantization of a trained decoder,
against simply spending fewer bits on every weight.

One decoder is trained as :mod:`bench_patch_settings` trains a setting (the same shapes, fit and
steps), then its quantized weights are rewritten several ways and each way is scored on the same
shapes: the coded bytes of the weights (archive header and section, as :func:`archive_bytes`
writes them, so per-channel grids pay for their extra ranges) and the CD and F1 of every decoded
shape. No way retrains after the rewrite, so each row is what the lever gives a trained decoder
as it stands; the uniform-bits rows are the reference those levers must beat at equal bytes.

- ``bits N``: every weight tensor re-quantized on its own symmetric grid of N bits.
- ``prune P``: in each weight tensor (not the biases) the share P of the smallest |w| set to the
  grid's zero level; the entropy coder pays less for a peaked histogram.
- ``channels N``: each output channel of each weight tensor on its own symmetric grid of N bits
  (per-channel ranges: a channel of small weights gets a finer step).

Usage: python benchmarks/bench_decoder_bytes.py --shapes 8 --steps 4000 --width 12 \\
    --setting '{"tied_modules": 4, "weight_bits": 8, "feature_bits": 4, ...}'
Writes benchmarks/results/decoder_bytes_<tag>.json and its figure decoder_bytes_<tag>.html.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import torch

from necgs.coding.archive import archive_bytes
from necgs.coding.sections import weight_sections
from necgs.model.quant import QuantizedTensor, symmetric_spec, to_symbols

from _common import RESULTS, machine, write_json
from bench_convergence import decode_metrics
from bench_patch_settings import study_arguments, study_shapes, train_setting


def requantized(q: QuantizedTensor, bits: int) -> QuantizedTensor:
    """``q``'s values on a symmetric per-tensor grid of ``bits`` bits."""
    value = q.value()
    spec = symmetric_spec(value, bits, True)
    return QuantizedTensor(to_symbols(value, spec), spec, q.shape)


def pruned(q: QuantizedTensor, share: float) -> QuantizedTensor:
    """``q`` with the share ``share`` of its smallest magnitudes set to the grid's zero level (2^(N-1))."""
    value = q.value().reshape(-1)
    k = int(share * value.numel())
    if k == 0:
        return q
    symbols = q.symbols.copy()
    symbols[torch.argsort(value.abs())[:k].numpy()] = 2 ** (q.spec.bits - 1)
    return QuantizedTensor(symbols, q.spec, q.shape)


def per_channel(name: str, q: QuantizedTensor, bits: int) -> dict[str, QuantizedTensor]:
    """``q`` split by output channel (dim 0), each channel on its own symmetric grid of ``bits`` bits."""
    value = q.value()
    out = {}
    for c in range(value.shape[0]):
        spec = symmetric_spec(value[c], bits, True)
        out[f"{name}#{c}"] = QuantizedTensor(to_symbols(value[c], spec), spec, tuple(value[c].shape))
    return out


def joined(parts: dict[str, QuantizedTensor], name: str, shape: tuple[int, ...]) -> QuantizedTensor:
    """The dequantized channels of :func:`per_channel` as one tensor (float32 values, for decoding)."""
    value = torch.stack([parts[f"{name}#{c}"].value() for c in range(shape[0])])
    spec = symmetric_spec(value, 16, True)  # fine enough to carry the per-channel levels unchanged
    return QuantizedTensor(to_symbols(value, spec), spec, shape)


def coded_weight_bytes(weights: dict[str, QuantizedTensor]) -> int:
    """Bytes of an archive holding only these weights: header (grids, shapes) and coded section."""
    meta, section = weight_sections(weights, "auto")
    return len(archive_bytes({"weights": meta}, [section]))


def variants(weights: dict[str, QuantizedTensor], bits: list[int], shares: list[float], channel_bits: list[int]):
    """(label, stored weights, weights to decode with) for every way of rewriting ``weights``."""
    is_weight = {n: n.endswith("weight") for n in weights}
    yield "as trained", weights, weights
    for b in bits:
        w = {n: requantized(q, b) for n, q in weights.items()}
        yield f"bits {b}", w, w
    for s in shares:
        w = {n: pruned(q, s) if is_weight[n] else q for n, q in weights.items()}
        yield f"prune {s:.0%}", w, w
    for b in channel_bits:
        stored: dict[str, QuantizedTensor] = {}
        decode: dict[str, QuantizedTensor] = {}
        for n, q in weights.items():
            if is_weight[n]:
                parts = per_channel(n, q, b)
                stored |= parts
                decode[n] = joined(parts, n, q.shape)
            else:
                stored[n] = decode[n] = q
        yield f"channels {b}", stored, decode


def figure(rows: list[dict], path, plotlyjs: str | bool = "cdn") -> None:
    """CD and F1@0.005 against the coded weight bytes, one line per way of rewriting the weights."""
    import plotly.graph_objects as go  # heavy: only for the figure
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("CD mean (x1e-3)", "F1@0.005"))
    trained = next(r for r in rows if r["variant"] == "as trained")
    for family, colour in (("bits", "#636efa"), ("prune", "#ef553b"), ("channels", "#00cc96")):
        members = [trained] + [r for r in rows if r["variant"].startswith(family)]
        members.sort(key=lambda r: r["weight_bytes"])
        for col, key, scale in ((1, "cd_mean", 1e3), (2, "f1_005", 1.0)):
            fig.add_trace(
                go.Scatter(
                    x=[r["weight_bytes"] for r in members],
                    y=[r[key] * scale for r in members],
                    mode="lines+markers+text",
                    text=[r["variant"] for r in members],
                    textposition="top center",
                    name=family,
                    legendgroup=family,
                    showlegend=col == 1,
                    line={"color": colour},
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title="coded weight bytes")
    fig.update_layout(template="plotly_white", title=f"{path.stem}: rewriting one trained decoder's weights")
    fig.write_html(path, include_plotlyjs=plotlyjs)


def main() -> None:
    p = study_arguments(__doc__, shapes=8, steps=4000, width="12", fit_iterations=50, fit_samples=10_000)
    p.add_argument("--setting", required=True, help="TrainConfig / decoder overrides (JSON), as bench_patch_settings")
    p.add_argument("--bits", type=int, nargs="+", default=[7, 6, 5])
    p.add_argument("--prune", type=float, nargs="+", default=[0.1, 0.25, 0.4, 0.6])
    p.add_argument("--channel-bits", type=int, nargs="+", default=[8, 7, 6])
    p.add_argument("--tag", default="ama8")
    args = p.parse_args()
    loaded, fitted = study_shapes(args)
    width = int(args.width) if args.width.isdigit() else args.width
    codec = train_setting(fitted, args.K, width, args.steps, json.loads(args.setting), len(loaded.meshes))
    rows = []
    for label, stored, decode in variants(codec.weights, args.bits, args.prune, args.channel_bits):
        m = decode_metrics(replace(codec, weights=decode), fitted, loaded.meshes, args.samples)
        nonzero = float(np.mean(np.concatenate([q.symbols != 2 ** (q.spec.bits - 1) for q in stored.values()])))
        rows.append(
            {
                "variant": label,
                "weight_bytes": coded_weight_bytes(stored),
                "nonzero_share": round(nonzero, 4),
                "cd_mean": m["cd_mean"],
                "cd_median": m["cd_median"],
                "f1_005": m["f1_005"],
                "empty": m["empty"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    write_json(
        f"decoder_bytes_{args.tag}",
        {"args": vars(args), "train_s": round(codec.seconds, 1), "rows": rows, "machine": machine()},
    )
    figure(rows, RESULTS / f"decoder_bytes_{args.tag}.html")


if __name__ == "__main__":
    main()
