"""What every way to compress shares: reading the source, stage progress, the result, the stored settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from necgs.config import NecgsConfig
from necgs.errors import ConfigError, CorruptArchiveError
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import LoadedSet, load_meshes
from necgs.io.mesh import Mesh
from necgs.io.ply import binary_ply_bytes
from necgs.target_rate import RatePlan

#: progress(stage, done, total, detail) — stages: fit, train, code, decode.
StageProgress = Callable[[str, int, int, str], None]
#: What can be compressed: a folder, zip, file or data set name, a list of them, a list of meshes, a LoadedSet.
Source = str | os.PathLike | list | tuple | LoadedSet


@dataclass
class CompressResult:
    """What a compression produced.

    Attributes:
        path: The archive.
        bytes: Its size (the whole file).
        names: Shape names, in archive order.
        failures: Input files that could not be used, one line each.
        seconds: Wall time per stage ("fit", "train", "code", "check": the empty-surface check).
        resumed_from_epoch: Training resumed from this checkpointed epoch (0: fresh).
        empty_shapes: Shapes whose decoded TSDF has no zero crossing, so they decode to no
            surface (a collapsed or undertrained decoder); the archive is still written.
        ratio_ply: The meshes as binary PLY over the archive (what rate control targets).
        rate_plan: The setting rate control chose, when a target was given.
        prior: Name and id of the prior the archive needs, if compressed against one.
        notes: What the user should know about the result (prior choice, domain warnings).
    """

    path: Path
    bytes: int
    names: list[str]
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    resumed_from_epoch: int = 0
    empty_shapes: list[str] = field(default_factory=list)
    ratio_ply: float | None = None
    rate_plan: RatePlan | None = None
    prior: dict | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls, loaded: LoadedSet, output: str | os.PathLike, size: int, seconds: dict[str, float], **rest
    ) -> CompressResult:
        """The result of writing ``size`` bytes to ``output`` from ``loaded`` (names, failures and the
        ratio to binary PLY follow from them); ``rest`` are the other fields."""
        ply = sum(binary_ply_bytes(m) for m in loaded.meshes)
        names = [m.name for m in loaded.meshes]
        return cls(Path(output), size, names, [str(f) for f in loaded.failures], seconds, ratio_ply=ply / size, **rest)


def as_loaded(source: Source) -> LoadedSet:
    """The meshes of ``source`` (a LoadedSet is taken as it is; names and paths are resolved).

    Args:
        source: A folder, zip, file or data set name, a list of files, a list of
            :class:`~necgs.io.mesh.Mesh`, or a LoadedSet.
    """
    if isinstance(source, LoadedSet):
        return source
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], Mesh):
        return LoadedSet(list(source), [], [Path(m.name) for m in source], [binary_ply_bytes(m) for m in source])
    if isinstance(source, (str, os.PathLike)):
        source = resolve_dataset(source)
    return load_meshes(source)


def emit(progress: StageProgress | None, stage: str, done: int, total: int, detail: str = "") -> None:
    """Report a stage's progress to ``progress``, if given."""
    if progress is not None:
        progress(stage, done, total, detail)


def config_from_metadata(data: dict) -> NecgsConfig:
    """The settings an archive stored (:meth:`NecgsConfig.to_dict`), validated.

    Raises:
        CorruptArchiveError: Malformed settings (an unknown key, a wrong type, an invalid value).
    """
    try:
        return NecgsConfig.from_dict(data).validate()
    except ConfigError as exc:
        raise CorruptArchiveError(f"archive settings are malformed ({exc})") from None
