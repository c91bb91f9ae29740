"""Helpers shared by the CLI subcommands."""

from __future__ import annotations

import argparse
import sys

from necgs.settings import KNOB


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda`` (the ``device`` knob of :data:`necgs.settings.KNOBS`), default auto."""
    knob = KNOB["device"]
    parser.add_argument(knob.option, choices=knob.choices, default="auto", help=knob.help)


def warn(message: str) -> None:
    """One line on stderr."""
    print(message, file=sys.stderr)
