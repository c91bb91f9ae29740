"""The volume encoder: full-resolution (the auto-encoder ablation) and pooled (the priors')."""

import pytest
import torch

from necgs.errors import ConfigError
from necgs.model.encoder import VolumeEncoder


def test_full_and_pooled_encoders_map_volumes_to_features():
    volumes = torch.randn(2, 4, 32, 32, 32)
    full = VolumeEncoder(32, 4, 8)
    pooled = VolumeEncoder(32, 4, 8, input_resolution=8)
    assert full(volumes).shape == pooled(volumes).shape == (2, 8, 4, 4, 4)
    assert sum(p.numel() for p in pooled.parameters()) < sum(p.numel() for p in full.parameters())


def test_the_pooled_encoder_sees_only_the_block_averages():
    """Two volumes with the same 8^3 block means encode alike."""
    enc = VolumeEncoder(32, 4, 8, input_resolution=8).eval()
    a = torch.randn(1, 4, 32, 32, 32)
    swapped = a.clone()
    swapped[..., 0, :, :], swapped[..., 1, :, :] = a[..., 1, :, :], a[..., 0, :, :]  # inside one 4-voxel slab
    with torch.no_grad():
        assert torch.allclose(enc(a), enc(swapped), atol=1e-5)
        assert not torch.allclose(enc(a), enc(torch.randn(1, 4, 32, 32, 32)), atol=1e-3)


@pytest.mark.parametrize("inner", [2, 12, 64])
def test_an_input_resolution_that_does_not_fit_is_a_config_error(inner):
    with pytest.raises(ConfigError, match="encoder input resolution"):
        VolumeEncoder(32, 4, 8, input_resolution=inner)
