"""Data sets necgs can see: built-in procedural sets and real folders of meshes.

Built-in sets are generated on first use into ``cache_dir("datasets", name, VERSION)``
as binary PLY files (atomically: a temporary folder renamed into place). Real sets are
the sub-folders of every data root (``../shared/data`` beside the checkout and the
folders in ``NECGS_DATA_DIRS``) that hold meshes; any folder or zip a user names works too.
The ``mixed`` set (like the paper's) takes a few evenly spaced shapes of every real set and
is materialized as a cache folder of symbolic links to them (nothing is copied).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from necgs.errors import ConfigError
from necgs.io.loading import MESH_SUFFIXES, save_mesh
from necgs.io.procedural import PROCEDURAL_SETS, generate
from necgs.paths import cache_dir, data_roots

#: Bump when the generators change, so stale caches are not reused.
VERSION = "v1"
#: Name of the set mixing a few shapes of every real set.
MIXED = "mixed"
#: Shapes taken from each real set for :data:`MIXED`.
MIXED_PER_SET = 6


@dataclass(frozen=True)
class DatasetInfo:
    """A data set offered by the CLI and the app.

    Attributes:
        name: Key used on the command line (``humans_ama``, ``figures``...).
        kind: ``"builtin"`` (procedural) or ``"real"`` (a folder of meshes, or ``mixed``).
        path: Its folder (for built-in sets, where it is or will be generated).
        count: Number of mesh files.
        description: One line.
    """

    name: str
    kind: str
    path: Path
    count: int
    description: str


def _mesh_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)


def _count_meshes(folder: Path) -> int:
    return len(_mesh_files(folder))


def builtin_dir(name: str) -> Path:
    """Where a built-in set lives once generated."""
    return cache_dir("datasets") / name / VERSION


def _real_sets() -> list[DatasetInfo]:
    out: list[DatasetInfo] = []
    for root in data_roots():
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            n = _count_meshes(folder)
            if n and folder.name not in PROCEDURAL_SETS and folder.name != MIXED:
                out.append(DatasetInfo(folder.name, "real", folder, n, f"meshes under {folder}"))
    return out


def mixed_selection(real: list[DatasetInfo] | None = None) -> dict[str, Path]:
    """The files of the ``mixed`` set: link name (``<set>/<relative path>``) -> real file.

    Takes :data:`MIXED_PER_SET` evenly spaced files (in sorted order) of every real set.
    """
    picked: dict[str, Path] = {}
    for info in _real_sets() if real is None else real:
        files = _mesh_files(info.path)
        k = min(MIXED_PER_SET, len(files))
        for i in np.unique(np.linspace(0, len(files) - 1, k).round().astype(int)):
            picked[f"{info.name}/{files[i].relative_to(info.path).as_posix()}"] = files[i].resolve()
    return picked


def list_datasets() -> list[DatasetInfo]:
    """Every built-in set, then every real set found under the data roots, then ``mixed``."""
    out = [
        DatasetInfo(s.name, "builtin", builtin_dir(s.name), s.count, s.description) for s in PROCEDURAL_SETS.values()
    ]
    real = _real_sets()
    out += real
    if len(real) >= 2:
        n = len(mixed_selection(real))
        out.append(
            DatasetInfo(
                MIXED,
                "real",
                builtin_dir(MIXED),
                n,
                f"up to {MIXED_PER_SET} shapes of each real set ({', '.join(r.name for r in real)})",
            )
        )
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


def ensure_mixed() -> Path:
    """Build (or reuse) the ``mixed`` folder of links to real files; returns it."""
    picked = mixed_selection()
    final = builtin_dir(MIXED)
    current = {p.relative_to(final).as_posix(): p.resolve() for p in _mesh_files(final)} if final.is_dir() else {}
    if current == picked:
        return final
    tmp = final.with_name(f".{VERSION}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, target in picked.items():
        link = tmp / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def resolve_dataset(name_or_path: str | os.PathLike) -> Path:
    """Folder (or zip) of a data set given by name, ``set/sub-folder`` of a real set, or path.

    Raises:
        ConfigError: Unknown name and no such path; the message lists the known names.
    """
    text = str(name_or_path)
    if text in PROCEDURAL_SETS:
        return ensure_builtin(text)
    real = _real_sets()
    if text == MIXED and len(real) >= 2:
        return ensure_mixed()
    for info in real:
        if info.name == text:
            return info.path
    path = Path(text)
    if path.exists():
        return path
    for root in data_roots():  # a part of a real set: humans_ama/crane
        if (root / text).is_dir() and _count_meshes(root / text):
            return root / text
    known = ", ".join(i.name for i in list_datasets())
    raise ConfigError(f"unknown data set {text!r} (not a folder either); known: {known}")
