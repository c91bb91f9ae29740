"""CLI subcommands; each module exposes ``register(subparsers)`` (see :mod:`necgs.cli`)."""
