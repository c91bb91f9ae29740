"""Quadric decimation then Draco: what a practitioner would do, and the bar to beat.

Decimation by fast-simplification (Fast-Quadric-Mesh-Simplification); the knob is the
fraction of faces kept, each with the Draco quantization that suits it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from necgs.baselines.base import Codec, ProgressFn, register_codec, report_progress
from necgs.baselines.draco import draco_decode, draco_encode
from necgs.errors import DependencyError, StopCheck, stop_if_asked
from necgs.io.mesh import Mesh


def decimate(mesh: Mesh, keep: float) -> Mesh:
    """Quadric decimation of ``mesh`` to about ``keep`` of its faces (at least 4)."""
    try:
        # optional/heavy, imported when this codec first runs (listing codecs stays light)
        import fast_simplification
    except ImportError:
        raise DependencyError("fast-simplification is not installed (pip install fast-simplification)") from None
    if keep >= 1.0 or mesh.n_faces <= 8:
        return mesh
    target = max(1.0 - keep, 0.0)
    # Triangle soups (STL) share no vertices; QEM needs the connectivity, so weld first.
    welded, inverse = np.unique(mesh.vertices, axis=0, return_inverse=True)
    faces = inverse.reshape(-1)[mesh.faces]
    v, f = fast_simplification.simplify(welded.astype(np.float32), faces.astype(np.int32), target_reduction=target)
    if len(f) == 0:
        return mesh
    return Mesh(v, f, mesh.name)


@register_codec
class DecimateDracoCodec(Codec):
    """Quadric decimation to a face fraction, then Draco."""

    name = "decimate-draco"
    label = "Decimation + Draco"
    knob = "keep"

    def available(self) -> tuple[bool, str]:
        try:
            import DracoPy  # noqa: F401
            import fast_simplification  # noqa: F401
        except ImportError as exc:
            return False, f"{exc.name} is not installed"
        return True, ""

    def sweep(self) -> list[dict]:
        return [
            {"keep": k, "bits": b}
            for k, b in ((0.5, 11), (0.3, 10), (0.2, 10), (0.1, 9), (0.05, 9), (0.03, 8), (0.02, 8), (0.01, 8))
        ]

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
            out.append(draco_encode(decimate(m, float(setting["keep"])), int(setting["bits"])))
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
        return out

    def setting_label(self, setting: dict) -> str:
        return f"{100 * setting['keep']:g}% q{setting['bits']}"
