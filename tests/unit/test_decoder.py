"""The shared 3D decoder: pixel shuffle, shapes, settings, and the inference path."""

import pytest
import torch

from necgs.errors import ConfigError
from necgs.model.decoder import Decoder, DecoderConfig, decoder_config, pixel_shuffle_3d


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


@pytest.mark.parametrize("tied, distinct", [(0, 4), (1, 4), (2, 3), (4, 1)])
def test_tied_modules_run_one_set_of_weights_at_every_tied_level(tied, distinct):
    torch.manual_seed(tied)
    cfg = decoder_config(64, 6, feature_channels=4, tied_modules=tied)
    dec = Decoder(cfg)
    assert len(dec.ups) == cfg.distinct_modules == distinct
    untied = Decoder(decoder_config(64, 6, feature_channels=4))
    per_module = sum(t.numel() for t in untied.ups[0].parameters())
    assert dec.param_count() == untied.param_count() - (4 - distinct) * per_module
    # the same decode by hand: module ups[slot] at every level it is tied to
    state = {k: v for k, v in dec.state_dict().items() if not k.startswith("ups.")}
    for level in range(4):
        slot = cfg.module_slot(level)
        state[f"ups.{level}.weight"], state[f"ups.{level}.bias"] = dec.ups[slot].weight, dec.ups[slot].bias
    untied.load_state_dict(state)
    features = torch.randn(2, 4, 4, 4, 4)
    with torch.no_grad():
        assert torch.allclose(dec(features), untied(features), atol=1e-6)


def test_tied_modules_are_described_for_the_archive_and_old_descriptions_read_untied():
    cfg = decoder_config(64, 6, feature_channels=4, tied_modules=3)
    assert DecoderConfig.from_dict(cfg.to_dict()) == cfg
    plain = decoder_config(64, 6, feature_channels=4)
    assert "tied_modules" not in plain.to_dict()  # an untied decoder is described as before
    assert DecoderConfig.from_dict(plain.to_dict()).tied_modules == 0


@pytest.mark.parametrize("width, tied", [(6, 5), (6, -1), ((6, 6, 8, 8, 8), 3)])
def test_impossible_ties_raise_config_error(width, tied):
    with pytest.raises(ConfigError, match="tied modules"):
        decoder_config(64, width, feature_channels=4, tied_modules=tied)
