"""What a prior is: a frozen decoder, its training features' grid and model, and its content id.

The id is a SHA-256 over everything decoding depends on (architecture, tensor grids and
symbols, feature grid, feature model), so two priors with the same id decode alike; the
volume encoder only starts the fitting, so it is not part of the id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from necgs.coding.streams import AnyModel
from necgs.config import FitConfig, PriorFitConfig, TrainConfig
from necgs.errors import ConfigError
from necgs.model.decoder import Decoder, DecoderConfig
from necgs.model.encoder import VolumeEncoder
from necgs.model.quant import QuantizedTensor, QuantSpec
from necgs.training.train import TrainedCodec, build_decoder


@dataclass
class Prior:
    """A pretrained decoder and what archives compressed against it share.

    Attributes:
        name: Short name (``bodies``); archives record it beside the id for messages.
        decoder_cfg: The architecture.
        weights: Quantized decoder tensors by name.
        features: Quantized features of the training shapes, (N, C, K', K', K'); their grid
            is the one new shapes' features are quantized on.
        feature_model: The entropy model archives may share for their features (a Laplace
            per channel, so it codes any symbol of the grid).
        fit: How the training shapes were fitted (resolution, truncation, fill).
        card: What it was trained on and how (JSON-ready).
        path: The file it was read from, if any.
        encoder: The 8-bit volume encoder's tensors by name, if the prior has one.
        encoder_input: The side the encoder pools volumes to.
    """

    name: str
    decoder_cfg: DecoderConfig
    weights: dict[str, QuantizedTensor]
    features: QuantizedTensor
    feature_model: AnyModel
    fit: FitConfig
    card: dict = field(default_factory=dict)
    path: Path | None = None
    encoder: dict[str, QuantizedTensor] | None = None
    encoder_input: int | None = None

    @property
    def id(self) -> str:
        """Content hash of everything decoding depends on (16 hex digits)."""
        return prior_id(self.decoder_cfg, self.weights, self.features.spec, self.feature_model)

    @property
    def resolution(self) -> int:
        """K of the volumes the decoder produces."""
        return self.decoder_cfg.resolution

    def fit_config(self, budget: PriorFitConfig, device: str = "auto") -> FitConfig:
        """How a new shape's volume is fitted against this prior: its frame at ``budget``'s iterations."""
        return budget.fit(self.fit, device)

    def train_config(self, budget: PriorFitConfig, device: str = "auto") -> TrainConfig:
        """How a new shape's feature is fitted against this prior, at ``budget``."""
        weight_bits = next(iter(self.weights.values())).spec.bits
        std = float(self.features.value().std())
        return budget.train(std, self.features.spec.bits, weight_bits, device)

    def decoder(self, device: str | torch.device = "cpu") -> Decoder:
        """The frozen decoder with its dequantized parameters."""
        return build_decoder(self.decoder_cfg, self.weights, device)

    def volume_encoder(self) -> VolumeEncoder | None:
        """The encoder with its dequantized parameters, or None for a prior without one.

        Raises:
            ConfigError: Encoder tensors that do not fit the architecture.
        """
        if self.encoder is None:
            return None
        cfg = self.decoder_cfg
        net = VolumeEncoder(
            cfg.resolution, cfg.feature_resolution, cfg.feature_channels, input_resolution=self.encoder_input
        )
        state = net.state_dict()
        if set(state) != set(self.encoder) or any(
            tuple(state[k].shape) != tuple(q.shape) for k, q in self.encoder.items()
        ):
            raise ConfigError(f"prior {self.name!r}: its encoder tensors do not match the encoder's architecture")
        net.load_state_dict({k: q.value() for k, q in self.encoder.items()})
        return net.eval()

    def codec(self) -> TrainedCodec:
        """The prior as a trained codec over its training shapes (the ``add`` path takes it)."""
        return TrainedCodec(self.decoder_cfg, self.weights, self.features)

    def describe(self) -> dict:
        """Name, id, size, architecture and card."""
        params = int(sum(np.prod(q.shape) for q in self.weights.values()))
        return {
            "name": self.name,
            "id": self.id,
            "file": str(self.path) if self.path else None,
            "bytes": self.path.stat().st_size if self.path and self.path.is_file() else None,
            "resolution": self.resolution,
            "decoder_parameters": params,
            "training_shapes": self.features.shape[0],
            "card": self.card,
        }


def prior_id(cfg: DecoderConfig, weights: dict[str, QuantizedTensor], feature_spec: QuantSpec, model: AnyModel) -> str:
    """SHA-256 (first 16 hex digits) of the architecture, the tensors and the feature grid and model."""
    h = hashlib.sha256()
    h.update(json.dumps([cfg.to_dict(), feature_spec.to_dict()], sort_keys=True).encode())
    for name in sorted(weights):
        q = weights[name]
        h.update(json.dumps([name, q.spec.to_dict(), list(q.shape)]).encode())
        h.update(np.ascontiguousarray(q.symbols, dtype="<i8").tobytes())
    h.update(model.to_bytes())
    return h.hexdigest()[:16]
