"""Exact symmetries of TSDF-Def volumes: mirror images and quarter turns about the up axis.

The grid is symmetric about its centre (node i sits at ``i h - 1``, h = 2 / (K - 1)), so a
mirror image or a quarter turn of a shape's volume is a permutation of its nodes, with the
deformation vectors (channels 1..3, along x, y, z) reflected or turned the same way. The
decoded surface of the transformed volume is the transformed surface, exactly. A prior can
train on these copies to see surface patches in more orientations than its data holds.
"""

from __future__ import annotations

import numpy as np
import torch

from necgs.errors import ConfigError
from necgs.geometry.block_volume import BlockVolume, VolumeSet
from necgs.io.mesh import Mesh, Transform

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


def copy_points(points: np.ndarray, suffix: str) -> np.ndarray:
    """Grid-frame points moved as :func:`augment_volumes` moves a volume to its copy ``suffix``.

    Args:
        points: (P, 3) points in the grid frame.
        suffix: A copy's suffix as :func:`augment_volumes` names it ("", "/mirror", "/turn2",
            "/mirror/turn1", ...): the mirror image first, then the quarter turns.

    Returns:
        (P, 3) float64 the moved points.

    Raises:
        ConfigError: A suffix no augmentation makes.
    """
    out = np.array(points, dtype=np.float64)
    for i, part in enumerate(suffix.split("/")[1:]):
        if part == "mirror" and i == 0:
            out[:, 0] = -out[:, 0]
        elif part in ("turn1", "turn2", "turn3"):
            for _ in range(int(part[-1])):
                out = np.stack((out[:, 2], out[:, 1], -out[:, 0]), axis=1)
        else:
            raise ConfigError(f"copy suffix {suffix!r} is not one of the augmentations' (e.g. '/mirror/turn1')")
    return out


def copy_mesh(mesh: Mesh, transform: Transform, suffix: str) -> Mesh:
    """The original-frame mesh whose decoded copy ``suffix`` is (what a copy's decode is compared with).

    The copy's volume decodes to the grid-frame surface moved by :func:`copy_points`; the mesh
    returned is that surface taken back through ``transform`` (a mirror image's faces reversed, so
    they stay oriented outward), named ``mesh.name + suffix``.

    Args:
        mesh: The original mesh, in its own frame.
        transform: Its original -> grid frame transform (the one its volume was fitted in).
        suffix: The copy's suffix (see :func:`copy_points`).

    Returns:
        The moved mesh, in the original's frame.
    """
    moved = transform.invert(copy_points(transform.apply(mesh.vertices), suffix))
    faces = mesh.faces[:, ::-1].copy() if "/mirror" in suffix else mesh.faces
    return Mesh(moved, faces, mesh.name + suffix)
