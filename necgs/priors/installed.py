"""Where priors are installed and finding one: by name or path for ``compress``, by id for ``decompress``.

Priors are looked for among the shipped ones (``assets/priors/``), the folders in
``NECGS_PRIOR_DIRS`` and the user's cache; the shipped ``retired/`` folder holds priors a
better one replaced, found by id and name but never offered. A prior whose id differs from the
one an archive names is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from necgs.coding.archive import ArchiveReader
from necgs.errors import NecgsError
from necgs.paths import REPO_ROOT, cache_dir
from necgs.priors.ncgp import PRIOR_FORMAT, PRIOR_SUFFIX, read_prior
from necgs.priors.prior import Prior

#: Priors that come with necgs.
SHIPPED_DIR = REPO_ROOT / "assets" / "priors"
#: Sub-folder of :data:`SHIPPED_DIR` holding replaced priors (found by id and name, never offered).
RETIRED = "retired"
#: A prior as callers name it: a name, a ``.ncgp`` path, or the object.
PriorSpec = str | os.PathLike | Prior


class PriorNotFoundError(NecgsError):
    """No prior with the wanted name or id is installed."""


class PriorMismatchError(NecgsError):
    """A prior was given whose id is not the one the archive was compressed against."""


def prior_dirs(retired: bool = False) -> list[Path]:
    """Where priors are looked for: the shipped folder, ``NECGS_PRIOR_DIRS``, the user's cache.

    Args:
        retired: Also the shipped ``retired/`` folder (last): priors a better one replaced,
            kept so that their archives still decode and ``--prior NAME`` still finds them,
            but not listed, offered in the app or tried by ``--prior auto``.
    """
    extra = [Path(p) for p in os.environ.get("NECGS_PRIOR_DIRS", "").split(os.pathsep) if p]
    folders = [SHIPPED_DIR, *extra, cache_dir("priors")] + ([SHIPPED_DIR / RETIRED] if retired else [])
    return [d for d in folders if d.is_dir()]


def _headers(retired: bool = False) -> list[tuple[Path, dict]]:
    """(path, metadata) of every readable prior file in :func:`prior_dirs` (``retired`` as there)."""
    found = []
    for folder in prior_dirs(retired):
        for path in sorted(folder.glob(f"*{PRIOR_SUFFIX}")):
            try:
                with ArchiveReader(path) as reader:
                    if reader.metadata.get("format") == PRIOR_FORMAT:
                        found.append((path, reader.metadata))
            except NecgsError:
                continue  # a damaged file in a search folder must not hide the others
    return found


def list_priors() -> list[dict]:
    """Name, id, file and card summary of every installed prior."""
    out = []
    for path, meta in _headers():
        card = meta.get("card", {})
        out.append(
            {
                "name": meta.get("name"),
                "id": meta.get("id"),
                "file": str(path),
                "bytes": path.stat().st_size,
                "resolution": meta.get("decoder", {}).get("resolution"),
                "trained_on": [t.get("source") for t in card.get("trained_on", [])],
            }
        )
    return out


def find_prior(spec: PriorSpec) -> Prior:
    """A prior given as an object, a file path, or the name of an installed prior.

    Raises:
        PriorNotFoundError: No such file or installed name; the message lists the names.
    """
    if isinstance(spec, Prior):
        return spec
    text = str(spec)
    if Path(text).is_file():
        return read_prior(text)
    for path, meta in _headers(retired=True):
        if meta.get("name") == text or path.stem == text:
            return read_prior(path)
    names = ", ".join(sorted({str(m.get("name")) for _, m in _headers()})) or "none installed"
    raise PriorNotFoundError(f"no prior named {text!r} and no such file (installed priors: {names})")


def find_prior_by_id(prior_id_: str, name: str = "?") -> Prior:
    """The installed prior with this id.

    Raises:
        PriorNotFoundError: None of :func:`prior_dirs` holds it.
    """
    damaged = []
    for path, meta in _headers(retired=True):
        if meta.get("id") == prior_id_:
            try:
                return read_prior(path)
            except NecgsError as exc:  # another copy may be intact
                damaged.append(str(exc))
    if damaged:
        raise PriorNotFoundError(f"prior {name!r} (id {prior_id_}) is installed but damaged: {damaged[0]}")
    raise PriorNotFoundError(
        f"this archive needs prior {name!r} (id {prior_id_}), which is not installed; "
        f"pass it with --prior PATH or put it in one of: {', '.join(str(d) for d in prior_dirs())}"
    )


def check_prior(prior: Prior, wanted_id: str, wanted_name: str, archive: str) -> Prior:
    """``prior`` if its id is ``wanted_id``; else :class:`PriorMismatchError`."""
    if prior.id != wanted_id:
        raise PriorMismatchError(
            f"{archive}: compressed against prior {wanted_name!r} (id {wanted_id}), "
            f"but the prior given is {prior.name!r} (id {prior.id})"
        )
    return prior
