"""Settings are checked before any work starts."""

from dataclasses import replace

import pytest

from necgs.config import PRESETS, FitConfig, NecgsConfig, TrainConfig
from necgs.errors import ConfigError
from necgs.settings import preset


@pytest.mark.parametrize(
    "cfg,needle",
    [
        (NecgsConfig(train=TrainConfig(weight_bits=1)), "weight bits"),
        (NecgsConfig(train=TrainConfig(feature_bits=17)), "feature bits"),
        (NecgsConfig(train=TrainConfig(epochs=-1)), "epochs"),
        (NecgsConfig(train=TrainConfig(feature_lr_scale=0)), "feature lr scale"),
        (NecgsConfig(fit=FitConfig(resolution=48)), "power of two"),
        (NecgsConfig(fit=FitConfig(resolution=1024)), "power of two"),
        (NecgsConfig(width=0), "width"),
        (NecgsConfig(width="gigantic"), "unknown decoder size"),
        (NecgsConfig(coder="zip"), "coder"),
        (NecgsConfig(deform=False), "backend 'none'"),
    ],
)
def test_out_of_range_settings_are_rejected(cfg, needle):
    with pytest.raises(ConfigError, match=needle):
        cfg.validate()


def test_presets_are_valid_and_scale():
    assert [PRESETS[p].fit.resolution for p in ("quick", "standard", "paper")] == [64, 64, 128]
    assert PRESETS["paper"].decoder().modules == 5 and PRESETS["standard"].decoder().modules == 4
    cfg = preset("quick", width=24, epochs=3, ssim=False, deform=False, device="cpu")
    assert cfg.train.epochs == 3 and not cfg.train.use_ssim and cfg.fit.backend == "none"
    assert cfg.decoder().widths == (24, 24, 24, 24, 24)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("fastest")
    assert replace(cfg, coder="huffman").validate().coder == "huffman"


def test_resolution_and_bit_overrides_reach_every_stage():
    cfg = preset("quick", resolution=64, weight_bits=6, feature_bits=5)
    assert cfg.fit.resolution == 64 and cfg.decoder().resolution == 64 and cfg.decoder().modules == 4
    assert (cfg.train.weight_bits, cfg.train.feature_bits) == (6, 5)
    with pytest.raises(ConfigError, match="power of two"):
        preset("quick", resolution=48)
    with pytest.raises(ConfigError, match="weight bits"):
        preset("quick", weight_bits=1)
