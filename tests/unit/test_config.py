"""Settings are checked before any work starts, and every form of a setting gives one tree."""

import argparse
import json
from dataclasses import replace
from operator import attrgetter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from necgs.coding.codec_archive import write_codec_archive
from necgs.commands import compress as compress_command
from necgs.compression import open_archive
from necgs.config import PRESETS, FitConfig, NecgsConfig, PriorFitConfig, Setting, TrainConfig
from necgs.errors import ConfigError
from necgs.evaluation.runner import EvaluationResult
from necgs.evaluation.runs import RunStore
from necgs.model.decoder import Decoder
from necgs.model.quant import QuantizedTensor, QuantSpec
from necgs.settings import (
    KNOB,
    KNOBS,
    NOTES,
    args_setting,
    page_setting,
    preset,
    read_setting,
    setting_dict,
    setting_label,
)
from necgs.training.train import TrainedCodec


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


def test_the_tied_standard_preset_runs_every_resolution_and_width_the_page_offers():
    for K in (16, 32, 64, 128):
        dec = preset("standard", resolution=K).decoder()
        assert dec.tied_modules == min(4, dec.modules) and dec.tied_modules >= 2  # fewer modules: all tied
    for width in ("tiny", "small", "medium", 10):
        assert preset("standard", width=width).decoder().tied_modules == 4
    assert preset("standard", tied_modules=0).decoder().tied_modules == 0


def test_resolution_and_bit_overrides_reach_every_stage():
    cfg = preset("quick", resolution=64, weight_bits=6, feature_bits=5)
    assert cfg.fit.resolution == 64 and cfg.decoder().resolution == 64 and cfg.decoder().modules == 4
    assert (cfg.train.weight_bits, cfg.train.feature_bits) == (6, 5)
    with pytest.raises(ConfigError, match="power of two"):
        preset("quick", resolution=48)
    with pytest.raises(ConfigError, match="weight bits"):
        preset("quick", weight_bits=1)


# ---------------------------------------------------------------------------- one settings tree
def _examples(name: str) -> dict:
    """A setting dict over preset ``name`` with every knob of the table at its example value."""
    return setting_dict({k.key: k.example for k in KNOBS}, preset=name)


def _argv(setting: dict) -> list[str]:
    """The ``necgs compress`` flags that give ``setting`` (each by its table row's flag style)."""
    out = []
    for knob in KNOBS:
        value = setting.get(knob.key)
        if value is None:
            continue
        if knob.style == "switch":
            out.append(knob.option if value else "--no-" + knob.option[2:])
        elif knob.style in ("on", "off"):
            assert value == (knob.style == "on"), f"{knob.key}'s example must be what its flag sets"
            out.append(knob.option)
        else:
            out += [knob.option, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return out


def _compress_parser() -> argparse.ArgumentParser:
    sub = argparse.ArgumentParser().add_subparsers()
    compress_command.register(sub)
    return sub.choices["compress"]


def _tiny_codec() -> TrainedCodec:
    """An untrained 8^3 codec: archives whose headers store any config are quick to write."""
    dcfg = NecgsConfig(fit=FitConfig(resolution=8), width=4, feature_channels=4, feature_resolution=2).decoder()
    weights = {
        name: QuantizedTensor(np.full(t.numel(), 32), QuantSpec(6, -0.5, 0.5), tuple(t.shape))
        for name, t in Decoder(dcfg).named_parameters()
    }
    shape = (1, dcfg.feature_channels, 2, 2, 2)
    return TrainedCodec(dcfg, weights, QuantizedTensor(np.full(int(np.prod(shape)), 32), QuantSpec(6, -1, 1), shape))


SHAPE = {"name": "s", "transform": {"center": [0.0, 0.0, 0.0], "scale": 1.0}, "n_vertices": 3, "n_faces": 1}


@pytest.mark.parametrize("everything", [False, True], ids=["preset", "every knob"])
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_form_of_a_setting_gives_the_same_tree(name, everything, tmp_path):
    setting = _examples(name) if everything else setting_dict(preset=name)
    tree = read_setting(setting)
    tuning = bool(setting.get("fine_tune"))
    for knob in KNOBS:  # each given knob reached every field it names
        for path in knob.paths if knob.key in setting else ():
            if tuning or not path.startswith("prior_fit."):
                assert attrgetter(path)(tree) == setting[knob.key], (knob.key, path)
    assert tree.config == preset(name, **{k: v for k, v in setting.items() if k != "preset"})
    assert everything or tree.config == PRESETS[name]

    args = _compress_parser().parse_args(["in", "-o", "out.ncgs", *_argv(setting)])
    assert read_setting(args_setting(args)) == tree

    assert Setting.from_dict(json.loads(json.dumps(tree.to_dict()))) == tree

    write_codec_archive(tmp_path / "a.ncgs", tree.config.to_dict(), _tiny_codec(), [SHAPE])
    with open_archive(tmp_path / "a.ncgs") as arc:
        assert NecgsConfig.from_dict(arc.metadata["config"]).validate() == tree.config

    store = RunStore(tmp_path / "runs")
    store.create(EvaluationResult("set", pd.DataFrame(), pd.DataFrame()), {"necgs": [setting]})
    (stored,) = json.loads(json.dumps(store.runs().config.iloc[0]))["necgs"]
    assert read_setting(stored) == tree and setting_label(stored) == setting_label(setting)

    offered = {k: v for k, v in setting.items() if KNOB[k].page is not None}
    if offered.get("preset", name) in KNOB["preset"].page:
        assert read_setting(page_setting(offered)) == read_setting(offered)


def test_every_knob_names_fields_of_the_tree_and_every_compress_flag_is_a_knob():
    root = Setting()
    for knob in KNOBS:
        for path in knob.paths:
            attrgetter(path)(root)  # AttributeError: a path that is not in the tree
        assert knob.read(knob.example) == knob.example and knob.key not in NOTES
    flags = {flag for action in _compress_parser()._actions for flag in action.option_strings}
    table = {k.option for k in KNOBS} | {"--no-" + k.option[2:] for k in KNOBS if k.style == "switch"}
    # the rest say where the archive goes and how the run is made (rate control, processes, machines), not what it is
    run = {"-h", "--help", "-o", "--output", "--target-ratio", "--target-bytes", "--nproc", "--nnodes", "--node-rank"}
    assert flags - table == run | {"--rdzv-endpoint", "--rdzv-id", "--rdzv-timeout"}
    assert table <= flags


@pytest.mark.parametrize("fixture", sorted((Path(__file__).parents[1] / "data").glob("*.ncgs")), ids=lambda p: p.name)
def test_configs_stored_by_older_archives_still_parse(fixture):
    with open_archive(fixture) as arc:
        stored = arc.metadata["config"]
    cfg = NecgsConfig.from_dict(stored).validate()
    back = cfg.to_dict()
    for part in ("fit", "train"):  # what was stored reads back unchanged; what was not takes the default
        assert back[part] == {**getattr(NecgsConfig(), part).to_dict(), **stored[part]}
    assert {k: back[k] for k in stored if k not in ("fit", "train")} == {
        k: v for k, v in stored.items() if k not in ("fit", "train")
    }


def test_settings_and_labels_stored_by_earlier_runs_still_read():
    rows = []
    for path in (Path(__file__).parents[2] / "benchmarks" / "results").rglob("summary.csv"):
        table = pd.read_csv(path)
        if {"codec", "setting", "label"} <= set(table):
            rows += [(s, label) for s, label in table[table.codec == "necgs"][["setting", "label"]].values]
    assert len(rows) > 50
    for text, label in rows:
        setting = json.loads(text)
        read_setting(setting)
        assert setting_label(setting) == label


def test_a_typo_or_a_bad_value_is_a_one_line_error_naming_it():
    cases = [
        (lambda: read_setting({"epoch": 5}), "unknown setting 'epoch' \\(did you mean 'epochs'\\?\\)"),
        (lambda: NecgsConfig.from_dict({"fit": {"resolutoin": 8}}), "unknown setting 'fit.resolutoin'"),
        (lambda: NecgsConfig.from_dict({"train": {"epochs": "many"}}), "train.epochs must be int"),
        (lambda: read_setting({"weight_bits": 1}), "weight bits"),
        (lambda: read_setting({"epochs": -3}), "epochs"),
        (lambda: read_setting({"preset": "huge"}), "unknown preset 'huge'"),
        (lambda: read_setting({"train_mode": "sparse"}), "unknown train_mode 'sparse'"),
        (lambda: page_setting({"epochs": 10**6}), "epochs must be in"),
        (lambda: page_setting({"resolution": 32}), "does not set 'resolution'"),
    ]
    cases += [(lambda k=k: setting_dict({k.key: object()}), f"setting {k.key} \\({k.option}\\)") for k in KNOBS]
    for make, needle in cases:
        with pytest.raises(ConfigError, match=needle) as info:
            make()
        assert "\n" not in str(info.value)


def test_the_fine_tuning_rule_is_one_and_the_rest_are_the_prior_fit_defaults():
    assert read_setting({"prior": "bodies"}).prior_fit == PriorFitConfig()
    assert read_setting({"prior": "bodies", "fine_tune": 200}).prior_fit == PriorFitConfig(fine_tune_steps=200)
    tuned = read_setting({"prior": "bodies", "fine_tune": 10, "delta_multiple": 16, "lambda_rate": 2.0})
    assert tuned.prior_fit == PriorFitConfig(fine_tune_steps=10, delta_multiple=16, fine_tune_lambda_rate=2.0)
    assert read_setting({"lambda_rate": 2.0}).prior_fit == PriorFitConfig()  # a trained decoder's lambda_R only
    assert read_setting({"prior": "auto", "lambda_rate": 2.0}).config.train.lambda_rate == 2.0
    for setting, needle in (
        ({"fine_tune": 200}, "give --prior NAME\\|PATH"),
        ({"prior": "auto", "fine_tune": 200}, "give --prior NAME\\|PATH"),
        ({"prior": "bodies", "delta_multiple": 16}, "delta_multiple.*give --fine-tune too"),
        ({"prior": "bodies", "lambda_rate": 1.0}, "delta's rate: give --fine-tune too"),
    ):
        with pytest.raises(ConfigError, match=needle):
            read_setting(setting)


def test_the_app_asks_only_within_the_page_bounds():
    for knob in KNOBS:
        if knob.page is None:
            continue
        numeric = isinstance(knob.page[0], (int, float)) and not isinstance(knob.page[0], bool)
        inside = knob.page if not numeric else (knob.page[0], knob.page[1])
        for value in inside:
            assert page_setting({knob.key: value}) == {knob.key: value}
        if numeric:
            with pytest.raises(ConfigError, match=knob.key):
                page_setting({knob.key: knob.page[1] + 1})
