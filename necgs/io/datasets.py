"""Data sets necgs can see: built-in procedural sets and real folders of meshes.

Built-in sets are generated on first use into ``cache_dir("datasets", name, VERSION)``
as binary PLY files (atomically: a temporary folder renamed into place). Real sets are
the sub-folders of every data root (``../shared/data`` beside the checkout and the
folders in ``NECGS_DATA_DIRS``) that hold meshes; any folder or zip a user names works too.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from necgs.errors import ConfigError
from necgs.io.loading import MESH_SUFFIXES, save_mesh
from necgs.io.procedural import PROCEDURAL_SETS, generate
from necgs.paths import cache_dir, data_roots

#: Bump when the generators change, so stale caches are not reused.
VERSION = "v1"


@dataclass(frozen=True)
class DatasetInfo:
    """A data set offered by the CLI and the app.

    Attributes:
        name: Key used on the command line (``humans_ama``, ``figures``...).
        kind: ``"builtin"`` (procedural) or ``"real"`` (a folder of meshes).
        path: Its folder (for built-in sets, where it is or will be generated).
        count: Number of mesh files.
        description: One line.
    """

    name: str
    kind: str
    path: Path
    count: int
    description: str


def _count_meshes(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)


def builtin_dir(name: str) -> Path:
    """Where a built-in set lives once generated."""
    return cache_dir("datasets") / name / VERSION


def list_datasets() -> list[DatasetInfo]:
    """Every built-in set, then every real set found under the data roots."""
    out = [
        DatasetInfo(s.name, "builtin", builtin_dir(s.name), s.count, s.description)
        for s in PROCEDURAL_SETS.values()
    ]
    for root in data_roots():
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            n = _count_meshes(folder)
            if n:
                out.append(DatasetInfo(folder.name, "real", folder, n, f"meshes under {folder}"))
    return out


def ensure_builtin(name: str) -> Path:
    """Generate a built-in set if it is not cached yet; returns its folder."""
    final = builtin_dir(name)
    if final.is_dir() and _count_meshes(final) == PROCEDURAL_SETS[name].count:
        return final
    tmp = final.with_name(f".{VERSION}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for mesh in generate(name):
        save_mesh(mesh, tmp / f"{mesh.name}.ply")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def resolve_dataset(name_or_path: str | os.PathLike) -> Path:
    """Folder (or zip) of a data set given by name or path.

    Raises:
        ConfigError: Unknown name and no such path; the message lists the known names.
    """
    text = str(name_or_path)
    if text in PROCEDURAL_SETS:
        return ensure_builtin(text)
    for info in list_datasets():
        if info.kind == "real" and info.name == text:
            return info.path
    path = Path(text)
    if path.exists():
        return path
    known = ", ".join(i.name for i in list_datasets())
    raise ConfigError(f"unknown data set {text!r} (not a folder either); known: {known}")
