"""The shared 3D decoder: pixel shuffle, shapes, settings, and the inference path."""

import pytest
import torch

from necgs.errors import ConfigError
from necgs.model.decoder import Decoder, decoder_config, pixel_shuffle_3d


def test_pixel_shuffle_places_each_channel_at_its_sub_voxel():
    # Channel c * 8 + (a * 4 + b * 2 + d) of voxel (i, j, k) lands at (2i + a, 2j + b, 2k + d).
    x = torch.arange(2 * 8 * 2 * 3 * 1, dtype=torch.float32).reshape(1, 16, 2, 3, 1)
    y = pixel_shuffle_3d(x, 2)
    assert y.shape == (1, 2, 4, 6, 2)
    for c, i, j, k, a, b, d in [(0, 0, 0, 0, 0, 0, 0), (1, 1, 2, 0, 1, 0, 1), (0, 1, 1, 0, 1, 1, 0)]:
        assert y[0, c, 2 * i + a, 2 * j + b, 2 * k + d] == x[0, c * 8 + a * 4 + b * 2 + d, i, j, k]


def test_decoder_output_shape_and_module_count():
    cfg = decoder_config(32, "tiny")
    assert cfg.modules == 3 and len(cfg.widths) == 4
    out = Decoder(cfg)(torch.randn(2, cfg.feature_channels, 4, 4, 4))
    assert out.shape == (2, 4, 32, 32, 32)


@pytest.mark.parametrize("resolution, width", [(48, 8), (32, 0), (32, "huge")])
def test_bad_decoder_settings_raise_config_error(resolution, width):
    with pytest.raises(ConfigError):
        decoder_config(resolution, width)


def test_inference_decode_matches_training_forward_and_ignores_batch_size():
    torch.manual_seed(0)
    dec = Decoder(decoder_config(16, 8)).eval()
    features = torch.randn(3, 16, 4, 4, 4)
    trained = dec(features)  # autograd path, as in training
    with torch.no_grad():
        alone = dec(features[1:2])
        batched = dec(features)
    assert trained.requires_grad and not batched.requires_grad
    assert torch.equal(alone[0], batched[1])  # one shape decodes exactly as within its set
    assert torch.allclose(batched, trained.detach(), atol=1e-5)
