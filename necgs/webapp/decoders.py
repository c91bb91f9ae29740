"""The decoder choice: its vocabulary, and the NeCGS settings each choice makes.

A NeCGS variant either trains a decoder on the set or fits only each shape's feature against
a prior (a pretrained decoder, :mod:`necgs.priors`); the page offers training, each installed
prior, both, or a prior with and without a fine-tuned delta of its decoder.
"""

from __future__ import annotations

from necgs.errors import NecgsError
from necgs.priors.installed import list_priors
from necgs.priors.ncgp import read_prior
from necgs.settings import read_setting, setting_dict
from necgs.webapp.messages import scrub_paths

#: The decoder choices: a decoder trained on the set (the default), a prior, both, or a prior
#: with and without a fine-tuned delta of its decoder.
TRAIN_DECODER = "train a decoder for this set"
PRIOR_CHOICE = "prior: "
BOTH_CHOICE = "both: train a decoder + prior "
FINE_TUNE_CHOICE = "prior, and prior + fine-tuned delta: "
#: Fine-tuning steps of the app's fine-tuned prior variant (``compress --fine-tune``).
FINE_TUNE_STEPS = 200


def installed_priors() -> list[dict]:
    """The installed priors (:func:`necgs.priors.installed.list_priors`), one per name (the first found wins)."""

    seen: dict[str, dict] = {}
    for info in list_priors():
        if info.get("name"):
            seen.setdefault(str(info["name"]), info)
    return list(seen.values())


def decoder_choices(priors: list[dict] | None = None) -> list[str]:
    """The decoder choices: training on the set, then per installed prior itself and both."""
    priors = installed_priors() if priors is None else priors
    out = [TRAIN_DECODER]
    for info in priors:
        out += [f"{PRIOR_CHOICE}{info['name']}", f"{BOTH_CHOICE}{info['name']}", f"{FINE_TUNE_CHOICE}{info['name']}"]
    return out


def decoder_note(priors: list[dict] | None = None) -> str:
    """One line on the installed priors (what each was trained on), for the decoder control."""
    priors = installed_priors() if priors is None else priors
    if not priors:
        return "No prior is installed (necgs prior train ... puts one in NECGS_PRIOR_DIRS), so the decoder is trained."
    described = "; ".join(
        f"{p['name']} (K={p.get('resolution')}, {(p.get('bytes') or 0) / 1e3:.0f} kB, trained on "
        f"{', '.join(map(str, p.get('trained_on') or [])) or '?'})"
        for p in priors
    )
    return f"A prior is a decoder pretrained on other shapes; only each shape's feature is fitted: {described}."


def parse_decoder(choice: str | None) -> tuple[bool, str | None, bool]:
    """(train a decoder on the set?, the prior's name or None, add a fine-tuned prior?) of a choice.

    Raises:
        NecgsError: Not one of :func:`decoder_choices`' forms.
    """
    text = str(choice or TRAIN_DECODER)
    if text == TRAIN_DECODER:
        return True, None, False
    for prefix, train, tune in (
        (PRIOR_CHOICE, False, False),
        (BOTH_CHOICE, True, False),
        (FINE_TUNE_CHOICE, False, True),
    ):
        if text.startswith(prefix) and text[len(prefix) :].strip():
            return train, text[len(prefix) :].strip(), tune
    raise NecgsError(f"unknown decoder choice {text!r}; choose {TRAIN_DECODER!r} or an installed prior")


def decoder_choice(settings: list[dict]) -> str:
    """The decoder choice that made these NeCGS settings (the inverse of :func:`parse_decoder`)."""
    trees = [read_setting(s) for s in settings]
    priors = [t.prior for t in trees if t.prior is not None]
    if not priors:
        return TRAIN_DECODER
    if any(t.prior_fit.fine_tune_steps for t in trees):
        return f"{FINE_TUNE_CHOICE}{priors[0]}"
    trained = any(t.prior is None for t in trees)
    return f"{BOTH_CHOICE if trained else PRIOR_CHOICE}{priors[0]}"


def is_prior(setting: dict) -> bool:
    """Whether a NeCGS setting fits features against a prior (instead of training a decoder)."""
    return read_setting(setting).prior is not None


def prior_setting(name: str) -> dict:
    """The NeCGS setting of an installed prior, checked now: its name and the id it has.

    Raises:
        NecgsError: No installed prior of that name, or its file is damaged (one line, no server path).
    """

    info = next((p for p in installed_priors() if p["name"] == name), None)
    if info is None:
        names = ", ".join(p["name"] for p in installed_priors()) or "none is installed now"
        raise NecgsError(f"prior {name!r} is not installed any more (installed: {names}); reload the page")
    try:
        prior = read_prior(info["file"])
    except (NecgsError, OSError) as exc:
        raise NecgsError(f"prior {name!r} cannot be read ({scrub_paths(exc)}); reinstall it or pick another") from None
    return setting_dict(prior=name, prior_id=prior.id)


def decoder_variants(choice: str | None, trained: list[dict], always_train: bool = False) -> list[dict]:
    """The NeCGS settings of a decoder choice: the ``trained`` settings (one, or an ablation's
    variants: ``always_train``), then the prior's (checked, :func:`prior_setting`).

    Raises:
        NecgsError: An unknown choice or a prior that is missing or damaged.
    """
    train, prior, tune = parse_decoder(choice)
    priors = [prior_setting(prior)] if prior else []
    if tune:
        priors.append(setting_dict(priors[0], fine_tune=FINE_TUNE_STEPS))
    return (list(trained) if train or always_train else []) + priors
