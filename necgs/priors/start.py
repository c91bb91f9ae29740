"""Starting features of new shapes against a prior: its encoder's, or the nearest training shape's."""

from __future__ import annotations

import torch

from necgs.geometry.block_volume import Volumes
from necgs.model.decoder import Decoder
from necgs.priors.prior import Prior
from necgs.training.patches import coarse_targets


@torch.no_grad()
def start_features(prior: Prior, volumes: Volumes, decoder: Decoder | None = None) -> torch.Tensor:
    """Start features for new shapes: the prior's encoder's, or else the nearest training feature.

    Args:
        prior: The prior.
        volumes: (M, 4, K, K, K) volumes of the new shapes (dense or as blocks).
        decoder: The prior's decoder, when the caller has built it already.

    Returns:
        (M, C, K', K', K') starting features.
    """
    encoder = prior.volume_encoder()
    if encoder is None:
        return nearest_features(prior, volumes, decoder)
    return torch.cat([encoder(volumes[i : i + 8]) for i in range(0, volumes.shape[0], 8)])


@torch.no_grad()
def nearest_features(prior: Prior, volumes: Volumes, decoder: Decoder | None = None) -> torch.Tensor:
    """Start features for new shapes: each takes the training feature whose coarse decode is closest.

    The coarse head (resolution K/4) of the training features is compared by L1 with each new
    volume's average-pooled TSDF; a decoder without a coarse head starts from the mean feature.

    Args:
        prior: The prior.
        volumes: (M, 4, K, K, K) volumes of the new shapes (dense or as blocks).
        decoder: The prior's decoder, when the caller has built it already.

    Returns:
        (M, C, K', K', K') starting features.
    """
    train = prior.features.value()
    if not prior.decoder_cfg.coarse_head:
        return train.mean(0, keepdim=True).expand(volumes.shape[0], -1, -1, -1, -1).clone()
    decoder = decoder or prior.decoder()
    coarse = torch.cat([decoder.predict_coarse(train[i : i + 16]) for i in range(0, train.shape[0], 16)])
    targets = coarse_targets(volumes, prior.decoder_cfg.coarse_resolution)
    distance = (coarse.flatten(1)[None] - targets.flatten(1)[:, None]).abs().mean(-1)  # (M, N)
    return train[distance.argmin(1)].clone()
