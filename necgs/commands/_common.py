"""Helpers shared by the CLI subcommands."""

from __future__ import annotations

import argparse
import sys


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda``."""
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run (auto: CUDA when present)"
    )


def parse_width(text: str | None):
    """A decoder size: a name, an integer base width, or comma-separated widths."""
    if text is None:
        return None
    if "," in text:
        return tuple(int(w) for w in text.split(","))
    return int(text) if text.isdigit() else text


def warn(message: str) -> None:
    """One line on stderr."""
    print(message, file=sys.stderr)
