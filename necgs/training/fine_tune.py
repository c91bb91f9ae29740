"""Fine-tuning a frozen (prior) decoder: a small coded delta of its weights, trained with the features.

A prior's decoder fits shapes it never saw only as well as feature fitting can reach, far from
what a decoder trained on their set reaches (measurements: benchmarks/README.md, "Priors with an
encoder" and "Fine-tuning a prior for one mesh or a few"). Letting every weight move a little
closes most of that gap in tens of steps: the archive then stores, besides the features, each
weight's change on a grid ``multiple`` times as coarse as the prior's own, so most changes are
0 or +-1 step and entropy-code to a few bits each. The decoder the archive decodes with is
``prior + delta``, exactly what training ran (quantization-aware, straight-through).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from necgs.coding.bit_estimate import rate_term
from necgs.config import TrainConfig
from necgs.device import resolve_device
from necgs.errors import StopCheck, stop_if_asked
from necgs.geometry.block_volume import Volumes
from necgs.model.decoder import Decoder, DecoderConfig
from necgs.model.quant import QuantizedTensor, QuantSpec, quantize, to_symbols
from necgs.optim import Adam
from necgs.training.train import StepObjective, TrainedCodec


def delta_specs(weights: dict[str, QuantizedTensor], multiple: int, bits: int) -> dict[str, QuantSpec]:
    """Each tensor's delta grid: steps of ``multiple`` x its own step, ``2^bits + 1`` levels centred on 0.

    Args:
        weights: The frozen decoder's quantized tensors by name.
        multiple: How many of the frozen grid's steps make one delta step (>= 1).
        bits: Bits of a delta symbol.
    """
    half = 2 ** (bits - 1)
    return {
        n: QuantSpec(bits, -half * multiple * q.spec.step, half * multiple * q.spec.step) for n, q in weights.items()
    }


class DeltaDecoder(Decoder):
    """A decoder whose parameters are ``base + Q(theta - base)`` on per-tensor delta grids.

    The trainable parameters start at the base values; :meth:`effective_params` quantizes
    their change from the base (so a forward pass is the decoder the archive rebuilds), and
    :meth:`delta` returns the changes as symbols.

    Args:
        cfg: The architecture.
        base: The frozen decoder's float parameters by name.
        specs: The delta grid of each parameter (:func:`delta_specs`).
        device: Where the decoder runs.
    """

    def __init__(
        self, cfg: DecoderConfig, base: dict[str, torch.Tensor], specs: dict[str, QuantSpec], device="cpu"
    ) -> None:
        super().__init__(cfg)
        self.load_state_dict(base)
        self.to(device)
        self.base = {n: t.detach().to(device).clone() for n, t in base.items()}
        self.delta_specs = specs

    def effective_params(self, specs: dict[str, QuantSpec] | None = None) -> dict[str, torch.Tensor]:
        """Every parameter as base + quantized change (``specs`` is ignored: the grids are fixed)."""
        return {n: self.base[n] + quantize(t - self.base[n], self.delta_specs[n]) for n, t in self.named_parameters()}

    def changes(self) -> dict[str, torch.Tensor]:
        """Every parameter's (unquantized) change from the base, by name."""
        return {n: t - self.base[n] for n, t in self.named_parameters()}

    def delta(self) -> dict[str, QuantizedTensor]:
        """The quantized change of every parameter from the base."""
        return {
            n: QuantizedTensor(
                to_symbols(t.detach() - self.base[n], self.delta_specs[n]), self.delta_specs[n], tuple(t.shape)
            )
            for n, t in self.named_parameters()
        }


def apply_delta(decoder: Decoder, delta: dict[str, QuantizedTensor]) -> Decoder:
    """Add a coded delta to a decoder's parameters in place; returns the decoder.

    Raises:
        ValueError: The delta's tensors do not match the decoder's.
    """
    params = dict(decoder.named_parameters())
    if set(params) != set(delta) or any(tuple(params[n].shape) != tuple(q.shape) for n, q in delta.items()):
        raise ValueError("the decoder delta does not match the decoder's parameters")
    with torch.no_grad():
        for n, q in delta.items():
            params[n].add_(q.value().to(params[n].device))
    return decoder


def fine_tune_decoder(
    codec: TrainedCodec,
    volumes: Volumes,
    features: QuantizedTensor,
    tcfg: TrainConfig,
    steps: int,
    lr: float,
    multiple: int,
    bits: int,
    progress: Callable[[int, int, float], None] | None = None,
    *,
    cosine: bool,
    lambda_rate: float = 0.0,
    cancel: StopCheck | None = None,
) -> tuple[dict[str, QuantizedTensor], QuantizedTensor]:
    """Train a delta of ``codec``'s decoder together with the shapes' features.

    Args:
        codec: The frozen decoder (a prior's) and the features' grid.
        volumes: (M, 4, K, K, K) the shapes' TSDF-Def volumes (dense or as blocks).
        features: (M, C, K', K', K') their starting features (on the codec's feature grid).
        tcfg: Loss, blocks per shape, shapes per step and the features' learning rate.
        steps: Optimizer steps.
        lr: Learning rate of the decoder's weights (Adam; the peak when ``cosine``).
        multiple: Delta step in frozen-grid steps (:func:`delta_specs`).
        bits: Bits of a delta symbol.
        progress: Called after every step with (steps done, steps, loss).
        cosine: Decay both learning rates to zero over the steps (half a cosine) instead of
            keeping them constant.
        lambda_rate: Weight of a rate term: the estimated bits of the delta and the features
            per output voxel (:func:`necgs.coding.bit_estimate.rate_term`, with the delta's grids
            in place of the decoder's); 0 leaves it out.
        cancel: Called before every step; True stops with :class:`necgs.errors.Cancelled`.

    Returns:
        The delta (quantized, by parameter name) and the shapes' fitted features.
    """
    device = resolve_device(tcfg.device)
    base = {n: q.value() for n, q in codec.weights.items()}
    decoder = DeltaDecoder(codec.decoder_cfg, base, delta_specs(codec.weights, multiple, bits), device)
    spec = features.spec
    feats = torch.nn.Parameter(features.value().to(device))
    peaks = (lr, tcfg.lr * tcfg.feature_lr_scale)
    opt = Adam([{"params": decoder.parameters(), "lr": peaks[0]}, {"params": [feats], "lr": peaks[1]}])
    objective = StepObjective(volumes, codec.decoder_cfg, tcfg)
    m = volumes.shape[0]
    generator = torch.Generator().manual_seed(tcfg.seed)
    for step in range(steps):
        stop_if_asked(cancel)
        idx = torch.randperm(m, generator=generator)[: tcfg.batch_size].tolist()
        loss = objective(decoder, quantize(feats[idx], spec), None, idx, generator)
        if lambda_rate > 0:
            loss = loss + lambda_rate * rate_term(
                decoder.changes(), decoder.delta_specs, feats[idx], spec, n_shapes=m, resolution=volumes.shape[-1]
            )
        opt.zero_grad()
        loss.backward()
        scale = 0.5 * (1 + math.cos(math.pi * step / steps)) if cosine else 1.0
        for group, peak in zip(opt.param_groups, peaks):
            group["lr"] = peak * scale
        opt.step()
        if progress is not None:
            progress(step + 1, steps, float(loss.detach()))
    fitted = feats.detach().cpu()
    return decoder.delta(), QuantizedTensor(to_symbols(fitted, spec), spec, tuple(fitted.shape))
