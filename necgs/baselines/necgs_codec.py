"""NeCGS itself behind the codec interface, so the evaluation runner treats it like any peer.

A set codec: :meth:`encode` returns ONE blob, the whole ``.ncgs`` archive.
A setting is a dict of the knobs of :data:`necgs.settings.KNOBS` (``preset``, ``width``,
``epochs``, ``lambda_rate``, ``ssim``, ``prior``, ``fine_tune``, ...), the same names as the
flags of ``necgs compress``; :func:`necgs.settings.read_setting` turns it into the settings tree.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from necgs.baselines.base import Codec, ProgressFn, register_codec
from necgs.errors import StopCheck
from necgs.io.mesh import Mesh
from necgs.settings import read_setting, setting_label


@register_codec
class NecgsCodec(Codec):
    """NeCGS: TSDF-Def volumes + quantization-aware auto-decoder + entropy coding."""

    name = "necgs"
    label = "NeCGS (ours)"
    knob = "width"

    def sweep(self) -> list[dict]:
        return [{"preset": "quick", "width": w} for w in ("medium", "small", "tiny")]

    def encode(
        self,
        meshes: Sequence[Mesh],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[bytes]:
        # optional/heavy, imported when this codec first runs (listing codecs stays light)
        from necgs.compression import compress

        tree = read_setting(setting)
        stage_cb = None
        if progress is not None:  # e.g. "fit 3/24", "train 40/150 loss 0.1234, ETA 60 s"
            stage_cb = lambda stage, done, total, detail="": progress(  # noqa: E731
                f"{stage} {done}/{total} {detail}".strip(), done / max(total, 1)
            )
        with tempfile.TemporaryDirectory(prefix="necgs-codec-") as tmp:
            path = Path(tmp) / "set.ncgs"
            compress(
                list(meshes),
                path,
                tree.config,
                progress=stage_cb,
                cancel=cancel,
                checkpoint_dir=Path(tmp) / "ckpt",
                prior=tree.prior,
                prior_fit=tree.prior_fit,
            )
            return [path.read_bytes()]

    def decode(
        self,
        blobs: Sequence[bytes],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[Mesh]:
        # optional/heavy, imported when this codec first runs (listing codecs stays light)
        from necgs.compression import decompress

        stage_cb = None
        if progress is not None:
            stage_cb = lambda stage, done, total, detail="": progress(stage, done / max(total, 1))  # noqa: E731
        return decompress(blobs[0], progress=stage_cb, prior=read_setting(setting).prior, cancel=cancel)

    def setting_label(self, setting: dict) -> str:
        return setting_label(setting)
