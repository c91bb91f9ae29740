"""The knobs of a NeCGS setting: one table, from which every form of a setting is derived.

A knob is what a user sets. Its short name is the key of a codec setting dict
(``{"preset": "quick", "width": "tiny"}``: the evaluation runner, the app, benchmark rows and a
run's stored settings) and, with dashes, the flag of ``necgs compress`` (``--weight-bits``); it
sets one or more field paths of the settings tree (:class:`necgs.config.Setting`, e.g.
``config.train.epochs``). From :data:`KNOBS` come:

- :func:`setting_dict`: a setting dict checked (a typo'd key is a :class:`ConfigError`) and
  normalized (parsed values in table order), as the app and a run store it;
- :func:`read_setting`: the validated tree a setting dict describes (the codec, the app, the CLI);
- :func:`add_flags` / :func:`args_setting`: the flags of ``necgs compress`` and the dict they give;
- :func:`page_setting`: a setting a page of the app asks for, within each knob's ``page`` bounds;
- :func:`setting_label`: a setting's short name in tables and plots;
- :func:`preset`: a named preset's :class:`NecgsConfig` with knob overrides.

Adding a knob: a field of the tree (``necgs/config.py``) and one row of :data:`KNOBS`.
"""

from __future__ import annotations

import argparse
import difflib
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from necgs.config import DEVICES, PRESETS, TRAIN_MODES, NecgsConfig, Setting
from necgs.errors import ConfigError


def _integer(value) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _number(value) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


def _switch(value) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {value!r}")


def _text(value) -> str:
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"expected a name, got {value!r}")


def parse_width(value) -> int | str | tuple[int, ...] | None:
    """A decoder size: a name, a base width (an integer or its digits), or the widths per stage
    (a list, or ``"w0,w1,..."``); None stays None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(_integer(w) for w in value)
    if isinstance(value, str) and "," in value:
        return tuple(_integer(w) for w in value.split(","))
    if isinstance(value, str) and not value.isdigit():
        return _text(value)
    return _integer(value)


@dataclass(frozen=True)
class Knob:
    """One setting a user may give.

    Attributes:
        key: Its key in a setting dict; the flag is ``--key`` with dashes unless ``flag`` says.
        paths: The fields of :class:`~necgs.config.Setting` it sets (dotted). Fields under
            ``prior_fit`` are set only when the setting fine-tunes a prior (``fine_tune`` > 0).
        parse: Its value from JSON or a flag's text; raises ValueError on a wrong type.
        help: What it does and why, in a sentence (the flag's help).
        example: A valid value that departs from every preset (the docs and tests use it).
        choices: The names it takes, where they are a fixed list (shown by the flag).
        page: What a page of the app may ask for: (low, high) for a number, else the allowed
            values; None where the app's page does not offer the knob.
        flag: The flag, where it is not ``--key``.
        style: How the flag gives the value: "value" (``--x V``), "switch" (``--x`` /
            ``--no-x``), "off" (the flag sets False), "on" (it sets True) or "optional"
            (``--x [V]``; alone it gives ``const``).
        const: The value of an "optional" flag given alone.
        metavar: The flag's value name in the help.
        label: How a setting's label names the value: a format (``"K{}"``), or for a switch
            the words (on, off), shown where it departs from the preset; None: not named.
    """

    key: str
    paths: tuple[str, ...]
    parse: Callable[[Any], Any]
    help: str
    example: Any
    choices: tuple[str, ...] | None = None
    page: tuple | None = None
    flag: str | None = None
    style: str = "value"
    const: Any = None
    metavar: str | None = None
    label: str | tuple[str, str] | None = None

    @property
    def option(self) -> str:
        """The flag of ``necgs compress``."""
        return self.flag or "--" + self.key.replace("_", "-")

    def read(self, value):
        """The parsed value; raises a one-line :class:`ConfigError` naming the knob."""
        try:
            value = self.parse(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"setting {self.key} ({self.option}): {exc}") from None
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"unknown {self.key} {value!r} ({self.option}); use one of {', '.join(self.choices)}")
        return value


#: Every knob, in the order of the flags and of a label's parts.
KNOBS: tuple[Knob, ...] = (
    Knob(
        "preset",
        ("preset",),
        _text,
        "the named starting point: quick (K=64, the fastest), standard (K=64, 3x the training) or paper "
        "(K=128, the authors' settings)",
        "standard",
        choices=tuple(PRESETS),
        page=("quick", "standard"),
    ),
    Knob(
        "width",
        ("config.width",),
        parse_width,
        "decoder size: tiny|small|medium|large|xl|paper, a base width, or w0,w1,... (the rate knob)",
        "medium",
        page=("tiny", "small", "medium", "large"),
        label="{}",
    ),
    Knob(
        "epochs",
        ("config.train.epochs",),
        _integer,
        "training epochs (overrides the preset)",
        7,
        page=(1, 600),  # the page's jobs end in minutes on a few shared cores; the CLI takes any count
    ),
    Knob(
        "resolution",
        ("config.fit.resolution",),
        _integer,
        "volume resolution K, a power of two (overrides the preset; the decoder gets the modules K needs)",
        32,
        label="K{}",
    ),
    Knob(
        "tied_modules",
        ("config.tied_modules",),
        _integer,
        "the first N upsampling modules of the decoder share one set of weights (0: none; fewer decoder bytes)",
        2,
        label="tied{}",
    ),
    Knob(
        "weight_bits",
        ("config.train.weight_bits",),
        _integer,
        "quantization bits of the decoder parameters (2..16)",
        5,
        label="w{}",
    ),
    Knob(
        "feature_bits",
        ("config.train.feature_bits",),
        _integer,
        "quantization bits of the embedded features (2..16)",
        7,
        label="f{}",
    ),
    Knob(
        "lambda_rate",
        ("config.train.lambda_rate", "prior_fit.fine_tune_lambda_rate"),
        _number,
        "lambda_R: weight of the rate term in training (default 0: none; larger values trade CD for smaller "
        "archives); with --prior and --fine-tune, the weight of the fine-tuned delta's rate term (default 0.5)",
        0.25,
        label="λ{}",
    ),
    Knob(
        "lambda_surface",
        ("config.train.lambda_surface",),
        _number,
        "weight of the surface term in training: the distance between the DMC surfaces of the decoded and "
        "fitted blocks (default 0: Eq. 3 alone)",
        0.5,
        label="surf{}",
    ),
    Knob(
        "train_mode",
        ("config.train.mode",),
        _text,
        "patch: train on blocks near the surface (default); dense: whole volumes (the paper's)",
        "dense",
        choices=TRAIN_MODES,
        label="{}",
    ),
    Knob(
        "ssim",
        ("config.train.use_ssim",),
        _switch,
        "switch the SSIM term of the loss (the Fig. 8b ablation; default: the preset's, on)",
        False,
        page=(False, True),
        style="switch",
        label=("ssim", "no ssim"),
    ),
    Knob(
        "deform",
        ("config.deform",),
        _switch,
        "ablation: plain TSDF volumes, no deformation (the Table 2 ablation)",
        False,
        page=(False, True),
        flag="--no-deform",
        style="off",
        label=("deform", "no deform"),
    ),
    Knob(
        "autoencoder",
        ("config.autoencoder",),
        _switch,
        "ablation: features from a volume encoder instead of the auto-decoder (Fig. 8a)",
        True,
        page=(False, True),
        style="on",
        label=("auto-encoder", "auto-decoder"),
    ),
    Knob(
        "prior",
        ("prior",),
        _text,
        "compress against a pretrained decoder: a name (necgs prior list), a .ncgp path, or auto "
        "(the better of the installed priors and a set-trained decoder)",
        "bodies",
    ),
    Knob(
        "fine_tune",
        ("prior_fit.fine_tune_steps",),
        _integer,
        "with --prior: also fine-tune the prior's decoder (STEPS steps, default 200) and store the coded "
        "change, which brings new shapes close to the CD of a decoder trained on them, for the change's bytes "
        "(measurements: benchmarks/README.md)",
        50,
        style="optional",
        const=200,
        metavar="STEPS",
    ),
    Knob(
        "delta_multiple",
        ("prior_fit.delta_multiple",),
        _integer,
        "with --fine-tune: the coded change's step in steps of the prior's grid (default 4, for one mesh; "
        "a coarser step such as 16 trades CD for bytes and serves a set better; measurements: "
        "benchmarks/README.md)",
        16,
        flag="--delta-step",
        metavar="M",
    ),
    Knob(
        "device",
        ("config.fit.device", "config.train.device"),
        _text,
        "where to run (auto: CUDA when present)",
        "cpu",
        choices=DEVICES,
    ),
)
#: Knobs by key.
KNOB: dict[str, Knob] = {k.key: k for k in KNOBS}
#: Keys a setting dict may carry that describe it without setting anything.
NOTES: dict[str, str] = {
    "prior_id": "the id the prior had when the app made the setting",
    "curve": "the rate-distortion curve the setting is a point of (the app draws one line)",
}


def setting_dict(setting: Mapping | None = None, /, **values) -> dict:
    """A setting dict checked and normalized: known keys, parsed values, table order, None dropped.

    Args:
        setting: A setting dict (e.g. one a run stored); ``values`` are merged over it.

    Raises:
        ConfigError: An unknown key (naming it and the nearest known one) or a value of the wrong type.
    """
    given = {**(setting or {}), **values}
    for key in given:
        if key not in KNOB and key not in NOTES:
            near = difflib.get_close_matches(str(key), [*KNOB, *NOTES], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"unknown setting {key!r}{hint}; known: {', '.join([*KNOB, *NOTES])}")
    out = {k.key: k.read(given[k.key]) for k in KNOBS if given.get(k.key) is not None}
    return out | {key: given[key] for key in NOTES if given.get(key) is not None}


def _check_fine_tune(given: Mapping) -> None:
    """The fine-tuning rule: it needs a named prior, and its step and (beside a prior) lambda_R mean
    nothing without it. Everything else of a fine-tuned delta is :class:`PriorFitConfig`'s default."""
    tune, step, rate = KNOB["fine_tune"].option, KNOB["delta_multiple"].option, KNOB["lambda_rate"].option
    named = given.get("prior") not in (None, "auto")
    if given.get("fine_tune") and not named:
        raise ConfigError(f"{tune} fine-tunes a named prior's decoder: give --prior NAME|PATH")
    if not given.get("fine_tune") and "delta_multiple" in given:
        raise ConfigError(f"{step} (delta_multiple) sets the step of a fine-tuned delta: give {tune} too")
    if not given.get("fine_tune") and named and "lambda_rate" in given:
        raise ConfigError(f"{rate} with --prior weighs a fine-tuned delta's rate: give {tune} too")


def read_setting(setting: Mapping) -> Setting:
    """The validated tree a setting dict describes: its preset with each given knob set.

    Raises:
        ConfigError: A bad key or value (an unknown preset too), or a setting that breaks the rules.
    """
    given = setting_dict(setting)
    name = given.get("preset", "quick")
    _check_fine_tune(given)
    tree = Setting(preset=name, config=PRESETS[name]).to_dict()
    for key, value in given.items():
        for path in KNOB[key].paths if key in KNOB else ():
            if given.get("fine_tune") or not path.startswith("prior_fit."):
                _put(tree, path, list(value) if isinstance(value, tuple) else value)
    if given.get("deform") is False:  # no deformation: the plain TSDF volumes, not fitted
        _put(tree, "config.fit.backend", "none")
    return Setting.from_dict(tree).validate()


def _put(tree: dict, path: str, value) -> None:
    *parents, leaf = path.split(".")
    for name in parents:
        tree = tree[name]
    tree[leaf] = value


def page_setting(values: Mapping) -> dict:
    """The setting dict a page of the app asks for: :func:`setting_dict` of knobs the page offers,
    each within its ``page`` bounds (a range for numbers, else the allowed values).

    Raises:
        ConfigError: A knob the page does not offer, or a value outside its bounds.
    """
    setting = setting_dict(values)
    for key, value in setting.items():
        bounds = KNOB[key].page if key in KNOB else None
        if bounds is None:
            raise ConfigError(f"the app's page does not set {key!r}")
        ranged = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if (ranged and not bounds[0] <= value <= bounds[1]) or (not ranged and value not in bounds):
            shown = f"[{bounds[0]}, {bounds[1]}]" if ranged else ", ".join(map(str, bounds))
            raise ConfigError(f"setting {key} must be in {shown} here, got {value!r}")
    return setting


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per knob (``necgs compress``); each stores its text into ``args.<key>``, None when not given."""
    for knob in KNOBS:
        common = {"dest": knob.key, "default": None, "help": knob.help}
        if knob.style == "switch":
            parser.add_argument(knob.option, action=argparse.BooleanOptionalAction, **common)
        elif knob.style in ("on", "off"):
            parser.add_argument(knob.option, action="store_const", const=knob.style == "on", **common)
        else:
            metavar = knob.metavar or ("{" + ",".join(knob.choices) + "}" if knob.choices else None)
            nargs = {"nargs": "?", "const": knob.const} if knob.style == "optional" else {}
            parser.add_argument(knob.option, metavar=metavar, **nargs, **common)


def args_setting(args: argparse.Namespace) -> dict:
    """The setting dict the knob flags of parsed ``args`` give (:func:`add_flags`)."""
    return setting_dict({knob.key: getattr(args, knob.key) for knob in KNOBS})


def preset(name: str, **knobs) -> NecgsConfig:
    """A named preset with knob overrides (keys of :data:`KNOBS`; None keeps the preset's), validated.

    Raises:
        ConfigError: An unknown preset or knob, or a value out of range.
    """
    return read_setting({**knobs, "preset": name}).config


def setting_label(setting: Mapping) -> str:
    """A setting's short name: ``quick tiny K32 (no ssim)``, ``prior bodies + fine-tune 200``.

    The preset, then each given knob that has a label format, then in parentheses the switches
    that depart from the preset; a prior setting is named by the prior and its fine-tuning.
    """
    given = setting_dict(setting)
    if "prior" in given:
        return _prior_label(given)
    name = given.get("preset", "quick")
    base = Setting(preset=name, config=PRESETS[name])
    parts, switches = [name], []
    for knob in KNOBS:
        if knob.key not in given or knob.label is None:
            continue
        if isinstance(knob.label, str):
            parts.append(knob.label.format(given[knob.key]))
        elif given[knob.key] != attrgetter(knob.paths[0])(base):
            switches.append(knob.label[0] if given[knob.key] else knob.label[1])
    return " ".join(parts) + (f" ({', '.join(switches)})" if switches else "")


def _prior_label(given: Mapping) -> str:
    text = f"prior {Path(str(given['prior'])).stem}"
    if not given.get("fine_tune"):
        return text
    knobs = [f"delta step x{given['delta_multiple']}"] if "delta_multiple" in given else []
    knobs += [f"lambda_R {given['lambda_rate']:g}"] if "lambda_rate" in given else []
    return f"{text} + fine-tune {given['fine_tune']}" + (f" ({', '.join(knobs)})" if knobs else "")
