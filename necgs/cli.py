"""The ``necgs`` command line: ``main(argv) -> exit code``.

Each subcommand lives in ``necgs/commands/<name>.py`` and exposes
``register(subparsers)`` which adds its parser and sets ``func`` to a callable
``(args) -> int``. User mistakes raise :class:`~necgs.errors.NecgsError` and are
printed as one line on stderr with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from necgs.errors import NecgsError

#: Subcommand modules under ``necgs.commands``, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "compress",
    "decompress",
    "info",
    "add",
    "fit",
    "evaluate",
    "codecs",
    "view",
    "datasets",
    "metrics",
    "prior",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="necgs",
        description="Neural compression for sets of 3D meshes (NeCGS) and its benchmark.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"necgs.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status (0 ok, 1 failure, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NecgsError as exc:
        print(f"necgs {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"necgs {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
