"""Where necgs keeps caches and where it looks for real data sets.

Environment variables:
    NECGS_CACHE_DIR: cache root (default ``~/.cache/necgs``); holds generated
        procedural sets, fitted volumes and training checkpoints.
    NECGS_DATA_DIRS: extra data roots, separated by ``os.pathsep``; each sub-folder
        holding meshes is offered as a data set.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository checkout (parent of the ``necgs`` package).
REPO_ROOT = Path(__file__).resolve().parent.parent


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (for files and runs a process left behind:
    a server's session folders, an archive being written, a run still computing)."""
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under the cache root."""
    root = Path(os.environ.get("NECGS_CACHE_DIR", Path.home() / ".cache" / "necgs"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_data_dir() -> Path | None:
    """The real mesh sets beside the checkout (``../shared/data``), if present."""
    candidate = REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def data_roots() -> list[Path]:
    """Every folder whose sub-folders are offered as real data sets."""
    roots = [Path(p) for p in os.environ.get("NECGS_DATA_DIRS", "").split(os.pathsep) if p]
    shared = shared_data_dir()
    if shared is not None:
        roots.append(shared)
    return [r for r in roots if r.is_dir()]
