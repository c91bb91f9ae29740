"""Differentiable estimate of the archive's bits, for a rate term in training (lambda_R).

The estimate uses the archive's own Laplace models (:mod:`necgs.coding.laplace`): every
decoder tensor with one model, the features with one model per channel. For each, the
scale is the one of the 256 grid scales that codes the current symbols in the fewest
bits, the rule the archive writer uses; the bits are the model's -log2 p evaluated on
the straight-through-rounded symbols, so the gradient pulls each parameter towards the
zero level (by 1 / (b ln 2) bits per level, b the scale in levels).

The training call (one line in :func:`necgs.training.train.train_autodecoder`)::

    loss = loss + tcfg.lambda_rate * rate_term(dict(decoder.named_parameters()), specs,
                                               batch_features, fspec, n_shapes=n,
                                               resolution=dcfg.resolution)

Normalization: :func:`rate_term` returns bits per output voxel, averaged over the set:
(decoder bits + N / B x the batch's feature bits) / (N K^3). An unbiased estimate of the
whole archive's payload bits divided by the number of voxels it describes, so lambda_R
has the same meaning for any set size and resolution (measurements: docs/ARCHITECTURE.md,
'Decisions and why', "Rate term").
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from necgs.coding.laplace import MAX_SYMBOL_BITS, fit_scale_codes, fit_segment_scale_codes, scale_of
from necgs.model.quant import QuantSpec

_LN2 = float(np.log(2.0))


def laplace_bits_torch(signed: torch.Tensor, scales: torch.Tensor, half_range: int) -> torch.Tensor:
    """Bits of each (float) signed symbol under a zero-mean Laplace, end symbols with their tails.

    The same formula as :func:`necgs.coding.laplace.laplace_bits`; differentiable in
    ``signed`` (linear in |q| for |q| >= 1, capped at 24 bits like the coder).

    Args:
        signed: (..., n) signed symbols in -R .. R.
        scales: Scale b of each symbol's model, broadcastable to ``signed``.
        half_range: R.

    Returns:
        Bits, same shape as ``signed``.
    """
    inv = 1.0 / scales
    return _bits_of_levels(signed, inv, torch.log(-torch.expm1(-0.5 * inv)), torch.log(-torch.expm1(-inv)), half_range)


def _bits_of_levels(
    signed: torch.Tensor, inv: torch.Tensor, log_p0: torch.Tensor, log_inner: torch.Tensor, half_range: int
) -> torch.Tensor:
    """:func:`laplace_bits_torch` given each symbol's 1 / b, log P(0) and log(1 - e^(-1/b))."""
    a = signed.abs()
    level = a.detach()
    tail = np.log(0.5) - (a - 0.5) * inv
    log_p = torch.where(level < 0.5, log_p0.expand_as(a), torch.where(level > half_range - 0.5, tail, tail + log_inner))
    return (-log_p / _LN2).clamp(max=MAX_SYMBOL_BITS)


def signed_symbols(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Signed level index of every element of ``x`` on ``spec`` (float, straight-through rounding).

    Forward: exactly the symbols :func:`necgs.model.quant.to_symbols` writes, minus 2^(N-1).
    Backward: identity inside [lo, hi], divided by the step.
    """
    u = (x.clamp(spec.lo, spec.hi) - spec.lo) / spec.step
    return u + (torch.round(u) - u).detach() - 2 ** (spec.bits - 1)


def fitted_scales(signed: torch.Tensor, groups: int, half_range: int) -> torch.Tensor:
    """(G,) grid scale per group of the (detached) symbols in -R .. R: the archive writer's rule."""
    codes = fit_scale_codes(torch.round(signed.detach()).to(torch.int64).reshape(-1).cpu().numpy(), groups, half_range)
    return torch.as_tensor(scale_of(codes), dtype=signed.dtype, device=signed.device)


def tensor_bits(x: torch.Tensor, spec: QuantSpec, groups: int = 1) -> torch.Tensor:
    """Differentiable bits of ``x`` quantized on ``spec`` and coded with a Laplace per group.

    Args:
        x: Any tensor; its flattened elements split into ``groups`` equal consecutive groups.
        spec: Its quantization grid.
        groups: Number of models (1 for a decoder tensor).

    Returns:
        Scalar tensor, bits.
    """
    return signed_bits(signed_symbols(x, spec), 2 ** (spec.bits - 1), groups)


def signed_bits(signed: torch.Tensor, half_range: int, groups: int = 1) -> torch.Tensor:
    """Bits of signed symbols (-R .. R) split into ``groups`` equal consecutive groups, a fitted Laplace each."""
    q = signed.reshape(groups, -1)
    return laplace_bits_torch(q, fitted_scales(q, groups, half_range)[:, None], half_range).sum()


def feature_bits(features: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Differentiable bits of features (B, C, K', K', K') with one Laplace per channel.

    The per-channel scales are fitted to the B features given (the archive fits them to
    the whole batch of shapes it writes, by the same rule).
    """
    per_channel = features.transpose(0, 1).reshape(features.shape[1], -1)
    return tensor_bits(per_channel, spec, features.shape[1])


def decoder_bits(params: Mapping[str, torch.Tensor], specs: Mapping[str, QuantSpec]) -> torch.Tensor:
    """Differentiable bits of every named decoder tensor (any set of names), one model each.

    Tensors on grids of one bit depth are estimated in one pass over their concatenated
    elements, each on its own grid (a fine-tuning step calls this every step, and a few
    dozen small tensor ops cost more than the arithmetic); otherwise tensor by tensor.
    """
    names = list(params)
    halves = {2 ** (specs[n].bits - 1) for n in names}
    if len(halves) != 1:
        return sum((tensor_bits(params[n], specs[n]) for n in names), torch.zeros(()))
    half = halves.pop()
    x = torch.cat([params[n].reshape(-1) for n in names])
    sizes = np.array([params[n].numel() for n in names])

    def per_element(values: list[float]) -> torch.Tensor:
        return torch.as_tensor(np.repeat(np.asarray(values, dtype=np.float32), sizes), device=x.device)

    lo, hi = per_element([specs[n].lo for n in names]), per_element([specs[n].hi for n in names])
    u = (torch.minimum(torch.maximum(x, lo), hi) - lo) / per_element([specs[n].step for n in names])
    signed = u + (torch.round(u) - u).detach() - half
    codes = fit_segment_scale_codes(torch.round(signed.detach()).to(torch.int64).cpu().numpy(), sizes, half)
    inv = 1.0 / scale_of(codes)  # the model's terms once per tensor, not once per element
    terms = [per_element(t) for t in (inv, np.log(-np.expm1(-0.5 * inv)), np.log(-np.expm1(-inv)))]
    return _bits_of_levels(signed, *terms, half).sum()


def rate_term(
    params: Mapping[str, torch.Tensor],
    specs: Mapping[str, QuantSpec],
    batch_features: torch.Tensor,
    feature_spec: QuantSpec,
    *,
    n_shapes: int,
    resolution: int,
) -> torch.Tensor:
    """The rate term of the training loss: estimated archive bits per output voxel.

    Args:
        params: The decoder's parameters by name (unquantized; quantized here on ``specs``
            with the straight-through rounding the decoder's forward uses).
        specs: Quantization grid of every parameter, keyed like ``params``.
        batch_features: (B, C, K', K', K') unquantized features of the batch.
        feature_spec: The features' quantization grid.
        n_shapes: N, shapes in the whole set (the decoder's bits are shared by all).
        resolution: K.

    Returns:
        Scalar tensor: (decoder bits + N / B * batch feature bits) / (N * K^3).
    """
    b = batch_features.shape[0]
    total = decoder_bits(params, specs).to(batch_features.device) + feature_bits(batch_features, feature_spec) * (
        n_shapes / b
    )
    return total / (n_shapes * resolution**3)


def codec_estimate_bytes(
    weights: Mapping[str, tuple[np.ndarray, QuantSpec]], features: np.ndarray, feature_spec: QuantSpec
) -> dict[str, float]:
    """The training estimate for final symbols, to report beside the archive's real bytes.

    Args:
        weights: name -> (unsigned symbols, spec) of each decoder tensor.
        features: (N, C, P) unsigned feature symbols of the set.
        feature_spec: Their grid.

    Returns:
        {"weights_bytes", "features_bytes"}: estimated payload bytes (models and framing excluded).
    """
    w = 0.0
    for symbols, spec in weights.values():
        half = 2 ** (spec.bits - 1)
        w += float(signed_bits(torch.as_tensor(symbols - half, dtype=torch.float64), half))
    c, half = features.shape[1], 2 ** (feature_spec.bits - 1)
    per_channel = features.transpose(1, 0, 2).reshape(c, -1) - half
    f = float(signed_bits(torch.as_tensor(per_channel, dtype=torch.float64), half, c))
    return {"weights_bytes": round(w / 8, 1), "features_bytes": round(f / 8, 1)}
