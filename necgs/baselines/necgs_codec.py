"""NeCGS itself behind the codec interface, so the evaluation runner treats it like any peer.

A set codec: :meth:`encode` returns ONE blob, the whole ``.ncgs`` archive.
Settings: ``preset`` (quick|standard|paper), ``width`` and ``lambda_rate`` (the rate
knobs: decoder size and lambda_R of the rate term), ``epochs``, ``resolution``,
``weight_bits``, ``feature_bits``, ``train_mode`` (patch or dense), ``ssim``, ``deform``
and ``autoencoder`` (the ablations), and ``prior`` (a prior's name or path: only the features
are fitted, against that pretrained decoder, :mod:`necgs.priors`) with optional ``fine_tune``
steps (a coded delta of the prior's decoder, :mod:`necgs.training.fine_tune`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from necgs.baselines.base import Codec, ProgressFn, register_codec
from necgs.config import preset_ssim
from necgs.io.mesh import Mesh


def config_from_setting(setting: dict):
    """The :class:`~necgs.config.NecgsConfig` a setting describes (validated)."""
    from necgs.config import preset

    return preset(
        setting.get("preset", "quick"),
        width=setting.get("width"),
        epochs=setting.get("epochs"),
        ssim=setting.get("ssim"),
        deform=setting.get("deform"),
        device=setting.get("device"),
        autoencoder=setting.get("autoencoder"),
        resolution=setting.get("resolution"),
        weight_bits=setting.get("weight_bits"),
        feature_bits=setting.get("feature_bits"),
        train_mode=setting.get("train_mode"),
        lambda_rate=setting.get("lambda_rate"),
    )


def prior_fit_from_setting(setting: dict):
    """The :class:`necgs.priors.fit_config.PriorFitConfig` of a prior setting with ``fine_tune`` steps (and
    optionally ``delta_multiple``, the delta's step in steps of the prior's grid, and
    ``lambda_rate``, the weight of the fine-tuning's rate term), else None."""
    if not setting.get("fine_tune"):
        return None
    from necgs.priors.fit_config import PriorFitConfig

    return PriorFitConfig(
        fine_tune_steps=int(setting["fine_tune"]),
        delta_multiple=int(setting.get("delta_multiple") or PriorFitConfig.delta_multiple),
        fine_tune_lambda_rate=PriorFitConfig.fine_tune_lambda_rate
        if setting.get("lambda_rate") is None
        else float(setting["lambda_rate"]),
    )


@register_codec
class NecgsCodec(Codec):
    """NeCGS: TSDF-Def volumes + quantization-aware auto-decoder + entropy coding."""

    name = "necgs"
    label = "NeCGS (ours)"
    knob = "width"

    def sweep(self) -> list[dict]:
        return [{"preset": "quick", "width": w} for w in ("medium", "small", "tiny")]

    def encode(self, meshes: Sequence[Mesh], setting: dict, progress: ProgressFn | None = None) -> list[bytes]:
        from necgs.compression import compress

        cfg = config_from_setting(setting)
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
                cfg,
                progress=stage_cb,
                checkpoint_dir=Path(tmp) / "ckpt",
                prior=setting.get("prior"),
                prior_fit=prior_fit_from_setting(setting),
            )
            return [path.read_bytes()]

    def decode(self, blobs: Sequence[bytes], setting: dict, progress: ProgressFn | None = None) -> list[Mesh]:
        from necgs.compression import decompress

        stage_cb = None
        if progress is not None:
            stage_cb = lambda stage, done, total, detail="": progress(stage, done / max(total, 1))  # noqa: E731
        return decompress(blobs[0], progress=stage_cb, prior=setting.get("prior"))

    def setting_label(self, setting: dict) -> str:
        if setting.get("prior"):
            tuned = f" + fine-tune {setting['fine_tune']}" if setting.get("fine_tune") else ""
            if setting.get("fine_tune"):
                knobs = [f"delta step x{setting['delta_multiple']}"] if setting.get("delta_multiple") else []
                knobs += [f"lambda_R {setting['lambda_rate']:g}"] if setting.get("lambda_rate") is not None else []
                tuned += f" ({', '.join(knobs)})" if knobs else ""
            return f"prior {Path(str(setting['prior'])).stem}{tuned}"
        extras = []
        if setting.get("ssim") is not None and setting["ssim"] != preset_ssim(setting.get("preset")):
            extras.append("ssim" if setting["ssim"] else "no ssim")  # only where it departs from the preset
        if setting.get("deform") is False:
            extras.append("no deform")
        if setting.get("autoencoder"):
            extras.append("auto-encoder")
        tail = f" ({', '.join(extras)})" if extras else ""
        overrides = "".join(
            f" {short}{setting[key]}"
            for key, short in (
                ("resolution", "K"),
                ("weight_bits", "w"),
                ("feature_bits", "f"),
                ("lambda_rate", "λ"),
                ("train_mode", ""),
            )
            if setting.get(key) is not None
        )
        return f"{setting.get('preset', 'quick')} {setting.get('width', '')}{overrides}{tail}"
