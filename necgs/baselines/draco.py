"""Google Draco (DracoPy): the mesh codec people use; quantization bits are the rate knob."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from necgs.baselines.base import Codec, ProgressFn, register_codec, report_progress
from necgs.errors import CorruptArchiveError, DependencyError, MeshError, StopCheck, stop_if_asked
from necgs.io.mesh import Mesh


def load_dracopy():
    """The DracoPy module (an optional dependency: imported when a Draco codec first runs).

    Raises:
        DependencyError: DracoPy is not installed.
    """
    try:
        import DracoPy  # optional: only the Draco codecs need it
    except ImportError:
        raise DependencyError("DracoPy is not installed (pip install DracoPy)") from None
    return DracoPy


def draco_encode(mesh: Mesh, bits: int, level: int = 10) -> bytes:
    """Encode one mesh with Draco at ``bits`` quantization bits."""
    if mesh.n_faces == 0:
        raise MeshError(mesh.name, "Draco cannot encode a mesh without faces")
    return load_dracopy().encode(
        mesh.vertices.astype(np.float32),
        faces=mesh.faces.astype(np.uint32),
        quantization_bits=bits,
        compression_level=level,
    )


def draco_decode(blob: bytes, name: str = "") -> Mesh:
    """Decode one Draco mesh."""
    try:
        m = load_dracopy().decode(blob)
    except Exception as exc:
        raise CorruptArchiveError(f"Draco stream of {name!r} is corrupt ({exc})") from None
    faces = getattr(m, "faces", None)
    return Mesh(np.asarray(m.points, dtype=np.float64), np.zeros((0, 3)) if faces is None else np.asarray(faces), name)


@register_codec
class DracoCodec(Codec):
    """Draco with position quantization bits as the knob (compression level 10)."""

    name = "draco"
    label = "Draco"
    knob = "bits"

    def available(self) -> tuple[bool, str]:
        try:
            load_dracopy()
        except DependencyError as exc:
            return False, str(exc)
        return True, ""

    def sweep(self) -> list[dict]:
        return [{"bits": b, "level": 10} for b in (14, 12, 11, 10, 9, 8, 7, 6)]

    def encode(
        self,
        meshes: Sequence[Mesh],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[bytes]:
        out = []
        for i, m in enumerate(meshes):
            stop_if_asked(cancel)
            out.append(draco_encode(m, int(setting["bits"]), int(setting.get("level", 10))))
            report_progress(progress, "encode", i, len(meshes))
        return out

    def decode(
        self,
        blobs: Sequence[bytes],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[Mesh]:
        out = []
        for i, b in enumerate(blobs):
            stop_if_asked(cancel)
            out.append(draco_decode(b, f"shape{i}"))
            report_progress(progress, "decode", i, len(blobs))
        return out

    def setting_label(self, setting: dict) -> str:
        return f"q{setting['bits']}"
