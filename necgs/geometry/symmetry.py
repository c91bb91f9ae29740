"""Exact symmetries of TSDF-Def volumes: mirror images and quarter turns about the up axis.

The grid is symmetric about its centre (node i sits at ``i h - 1``, h = 2 / (K - 1)), so a
mirror image or a quarter turn of a shape's volume is a permutation of its nodes, with the
deformation vectors (channels 1..3, along x, y, z) reflected or turned the same way. The
decoded surface of the transformed volume is the transformed surface, exactly. A prior can
train on these copies to see surface patches in more orientations than its data holds.
"""

from __future__ import annotations

import torch

from necgs.errors import ConfigError
from necgs.geometry.block_volume import BlockVolume, VolumeSet

#: ``PriorConfig.augment`` values: the copies each training shape is used in.
AUGMENTATIONS = {
    "none": "the shapes as they are",
    "mirror": "each shape and its mirror image across x = 0 (2 copies)",
    "turns": "each shape and its mirror image, each in 4 quarter turns about the y axis (8 copies)",
}


def check_augmentation(mode: str) -> None:
    """Raise :class:`~necgs.errors.ConfigError` unless ``mode`` is one of :data:`AUGMENTATIONS`."""
    if mode not in AUGMENTATIONS:
        raise ConfigError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}, got {mode!r}")


def mirror_x(volumes: torch.Tensor) -> torch.Tensor:
    """Mirror images across the plane x = 0.

    Args:
        volumes: (N, 4, K, K, K) TSDF-Def volumes, spatial dims (x, y, z).

    Returns:
        (N, 4, K, K, K) the mirrored volumes.
    """
    out = volumes.flip(2)
    out[:, 1] = -out[:, 1]
    return out


def quarter_turn_y(volumes: torch.Tensor) -> torch.Tensor:
    """A quarter turn about the y axis: the point (x, y, z) goes to (z, y, -x).

    Args:
        volumes: (N, 4, K, K, K) TSDF-Def volumes, spatial dims (x, y, z).

    Returns:
        (N, 4, K, K, K) the turned volumes.
    """
    out = volumes.transpose(2, 4).flip(4)
    return torch.stack((out[:, 0], out[:, 3], out[:, 2], -out[:, 1]), dim=1)


def augment_volumes(volumes: torch.Tensor, mode: str) -> tuple[torch.Tensor, list[str]]:
    """The copies of every volume that ``mode`` asks for (see :data:`AUGMENTATIONS`).

    Args:
        volumes: (N, 4, K, K, K) TSDF-Def volumes.
        mode: "none", "mirror" or "turns".

    Returns:
        (N * copies, 4, K, K, K) the volumes, the originals first, and each copy's suffix
        ("", "/mirror", "/turn1", "/mirror/turn3", ...), one per block of N.

    Raises:
        ConfigError: An unknown mode.
    """
    check_augmentation(mode)
    copies, suffixes = [volumes], [""]
    if mode in ("mirror", "turns"):
        copies.append(mirror_x(volumes))
        suffixes.append("/mirror")
    if mode == "turns":
        for base, suffix in list(zip(copies, suffixes)):
            turned = base
            for k in range(1, 4):
                turned = quarter_turn_y(turned)
                copies.append(turned)
                suffixes.append(f"{suffix}/turn{k}")
    return torch.cat(copies), suffixes


def augment_volume_set(volumes: VolumeSet, mode: str) -> tuple[VolumeSet, list[str]]:
    """:func:`augment_volumes` of a set held as blocks, one shape at a time, into blocks in memory.

    The same volumes in the same order (a far block's -0.0 deformation, which a mirror image
    makes, as +0.0) without ever holding the set's copies densely: 8 copies of 1,000 shapes at
    K = 64 would be 32 GB.

    Args:
        volumes: The set's N volumes.
        mode: "none", "mirror" or "turns".

    Returns:
        The N * copies volumes and each copy's suffix, as :func:`augment_volumes` gives them.
    """
    K = volumes.resolution
    suffixes = augment_volumes(torch.zeros((0, 4, K, K, K)), mode)[1]
    rows = [
        [BlockVolume.from_dense(c) for c in augment_volumes(volumes[i][None], mode)[0]] for i in range(len(volumes))
    ]
    return VolumeSet([row[k] for k in range(len(suffixes)) for row in rows], K), suffixes
