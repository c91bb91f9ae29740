"""The one small interface every codec (baselines and NeCGS itself) implements.

A codec turns a list of meshes (original coordinates) into a list of byte
strings and back. Per-shape codecs (Draco, decimation + Draco, point-cloud
coders) return one blob per shape; set codecs (NeCGS, QuantDeepSDF) return a
single blob holding the whole set. The rate is always ``sum(len(blob))``.

Each codec has a rate knob: :meth:`Codec.sweep` lists the settings of its
default rate-distortion sweep, each a JSON-ready ``dict`` passed back to
:meth:`Codec.encode` / :meth:`Codec.decode`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from necgs.errors import ConfigError, DependencyError, StopCheck
from necgs.io.mesh import Mesh

#: ``progress(stage, fraction_done)`` callback, fraction in [0, 1].
ProgressFn = Callable[[str, float], None]


def report_progress(progress: ProgressFn | None, stage: str, index: int, total: int) -> None:
    """Tell ``progress`` (if given) that item ``index`` of ``total`` of ``stage`` is done."""
    if progress is not None:
        progress(stage, (index + 1) / total)


class Codec(ABC):
    """A mesh-set codec with a rate knob.

    Attributes:
        name: Registry key, e.g. ``"draco"`` (used on the CLI: ``--codecs draco``).
        label: Human-readable name for tables and plot legends.
        knob: Name of the setting swept to trade rate for distortion.
    """

    name: str = ""
    label: str = ""
    knob: str = ""

    def available(self) -> tuple[bool, str]:
        """Whether the codec can run here, and if not, why (one line)."""
        return True, ""

    def require_available(self) -> None:
        """Raise :class:`DependencyError` with the reason when unavailable."""
        ok, why = self.available()
        if not ok:
            raise DependencyError(f"codec {self.name!r} is not available: {why}")

    @abstractmethod
    def sweep(self) -> list[dict]:
        """Settings of the default rate-distortion sweep, highest rate first."""

    @abstractmethod
    def encode(
        self,
        meshes: Sequence[Mesh],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[bytes]:
        """Encode meshes (original coordinates) with one setting; returns the blobs.

        ``cancel`` is asked before each shape (and by NeCGS at every fitting iteration and training
        step); True stops with :class:`necgs.errors.Cancelled`, so a job ends within a second or so.
        """

    @abstractmethod
    def decode(
        self,
        blobs: Sequence[bytes],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[Mesh]:
        """Decode blobs produced by :meth:`encode` back into meshes (original coordinates); ``cancel``
        as in :meth:`encode`."""

    def setting_label(self, setting: dict) -> str:
        """Short text naming one setting, for tables and hover labels."""
        return ", ".join(f"{k}={v}" for k, v in setting.items())


_REGISTRY: dict[str, type[Codec]] = {}


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Class decorator adding a codec to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def codec_names() -> list[str]:
    """Names of every registered codec (importing the built-in modules first)."""
    _import_builtin()
    return list(_REGISTRY)


def get_codec(name: str) -> Codec:
    """Instantiate a registered codec by name; unknown names raise :class:`ConfigError`."""
    _import_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown codec {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


#: Modules under ``necgs.baselines`` (and the NeCGS adapter) that register codecs.
BUILTIN_CODEC_MODULES: tuple[str, ...] = (
    "necgs.baselines.necgs_codec",
    "necgs.baselines.draco",
    "necgs.baselines.decimate_draco",
    "necgs.baselines.pointcloud",
    "necgs.baselines.quantdeepsdf",
    "necgs.baselines.mpeg",
)


def _import_builtin() -> None:
    for module in BUILTIN_CODEC_MODULES:
        importlib.import_module(module)
