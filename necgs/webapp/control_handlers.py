"""Handlers of the controls that follow others: the decoder advice for the set, the preset's epochs.

Each returns a list in the order of the outputs wired in :mod:`necgs.webapp.layout`; nothing
here runs a job.
"""

from __future__ import annotations

import gradio as gr

from necgs.config import PRESETS
from necgs.io.datasets import list_datasets
from necgs.webapp import decoders
from necgs.webapp.advice import DecoderAdvice, advise
from necgs.webapp.uploads import UPLOAD_LABEL


def shapes_of(dataset: str | None, files: list[str] | None, limit: float | None) -> int:
    """How many shapes a run of these controls compresses: the first ``limit`` of the data set
    (of the uploaded files, where a zip counts as ``limit``)."""
    limit = int(limit or 1)
    if files:
        zipped = any(str(f).lower().endswith(".zip") for f in files)
        return limit if zipped else min(limit, len(files))
    count = next((d.count for d in list_datasets() if d.name == dataset), None)
    return min(limit, count) if count else limit


def on_advice(
    dataset: str | None,
    files: list[str] | None,
    limit: float | None,
    decoder: str | None,
    width: str | None,
    advised: tuple[str, str] | list | None,
) -> list:
    """[decoder, width, advice line, advised state] for the set the controls now describe.

    The decoder and the width move to the new advice only where they still hold the previous
    one (a choice of the visitor's stays); a decoder choice whose prior is gone is replaced.
    The priors are read again (a page load calls this too).
    """
    priors = decoders.installed_priors()
    choices = decoders.decoder_choices(priors)
    advice = _advice(dataset, files, limit, priors)
    before_choice, before_width = tuple(advised) if advised else (None, None)
    keep = decoder in choices and decoder != before_choice
    return [
        gr.update(choices=choices, value=decoder if keep else advice.choice),
        gr.update(value=width if width != before_width else advice.width),
        advice.reason,
        (advice.choice, advice.width),
    ]


def on_restored(dataset: str | None, files: list[str] | None, limit: float | None) -> list:
    """[advice line, advised state] for the controls a loaded run set (its decoder and width stay)."""
    advice = _advice(dataset, files, limit, decoders.installed_priors())
    return [advice.reason, (advice.choice, advice.width)]


def _advice(dataset: str | None, files: list[str] | None, limit: float | None, priors: list[dict]) -> DecoderAdvice:
    named = None if files or dataset == UPLOAD_LABEL else dataset
    return advise(shapes_of(dataset, files, limit), named, priors)


def on_preset(preset: str) -> dict:
    """The epochs box shows the chosen preset's epochs (what a run then uses)."""
    return gr.update(value=PRESETS[preset].train.epochs) if preset in PRESETS else gr.update()
