"""Which torch device a run uses, from the ``device`` setting ("auto", "cpu" or "cuda")."""

from __future__ import annotations

import torch

from necgs.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """The device a ``device`` setting names.

    Args:
        name: "auto" (CUDA when present, else the CPU), "cpu" or "cuda".

    Returns:
        The torch device.

    Raises:
        ConfigError: "cuda" was asked for and no CUDA device is available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA device is available")
    return torch.device(name)
