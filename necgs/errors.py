"""One exception family for the whole library.

Every error a user can cause (bad file, bad setting, damaged archive) is a
:class:`NecgsError`. The CLI prints ``str(error)`` as a one-line message and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable

#: A cancel check, called at each stop point of long work (a training step, a fitting iteration,
#: a shape of a codec): True stops the work with :class:`Cancelled`.
StopCheck = Callable[[], bool]


class NecgsError(Exception):
    """Base class of every error necgs raises on purpose."""


class Cancelled(NecgsError):
    """The work was cancelled (a Cancel button, a closed tab, a stop check that said so)."""


def stop_if_asked(cancel: StopCheck | None) -> None:
    """Raise :class:`Cancelled` when ``cancel`` (if given) says so."""
    if cancel is not None and cancel():
        raise Cancelled("cancelled")


class ConfigError(NecgsError, ValueError):
    """A setting is out of range or inconsistent with another one."""


class MeshError(NecgsError):
    """A mesh cannot be used (empty, non-finite, degenerate)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class MeshLoadError(MeshError):
    """A mesh file cannot be read (missing, unknown format, unreadable)."""


class DependencyError(NecgsError, ImportError):
    """An optional dependency needed by the requested feature is missing."""


class ArchiveError(NecgsError):
    """Base class of every problem with a ``.ncgs`` archive."""


class BadMagicError(ArchiveError):
    """The file does not start with the ``.ncgs`` magic bytes."""


class UnsupportedVersionError(ArchiveError):
    """The archive's major version is not one this reader understands."""


class TruncatedArchiveError(ArchiveError):
    """The archive ends before the data its header announces."""


class ChecksumError(ArchiveError):
    """A section's CRC32 does not match its bytes."""


class CorruptArchiveError(ArchiveError):
    """The archive is structurally invalid (bad header, bad section data)."""
