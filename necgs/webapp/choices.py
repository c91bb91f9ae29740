"""What the run controls offer, and the NeCGS settings they make: one run's, or an ablation's variants."""

from __future__ import annotations

from necgs.baselines.base import get_codec
from necgs.errors import NecgsError
from necgs.settings import page_setting, setting_dict

#: The peer codecs the page offers (those not available here are named, not offered).
BASELINES = ("draco", "decimate-draco", "pointcloud-spsr", "quantdeepsdf", "gpcc", "gpcc-trisoup", "vpcc", "pcgcv2")
#: The data set the page starts on (also the first-launch run's).
DEFAULT_DATASET = "figures"
#: How many of its shapes the page starts with.
DEFAULT_SHAPES = 6
#: The presets the page offers.
PAGE_PRESETS = ("quick", "standard")
#: The factor whose variants are points of one rate-distortion curve (``"curve"`` in each setting):
#: widths x bits, as many points as decimation + Draco's sweep, all picked by default. The points are
#: the lower envelope of the measured rate table (:data:`necgs.target_rate.RATE_TABLE`) with the band loss.
RATE_CURVE = "rate curve (NeCGS as a curve)"
#: Ablation factor -> its variants (name -> overrides of the NeCGS setting); the first is the reference.
ABLATIONS: dict[str, dict[str, dict]] = {
    "SSIM term": {"with SSIM": {"ssim": True}, "without SSIM": {"ssim": False}},
    "deformation": {"TSDF-Def (with deformation)": {"deform": True}, "plain TSDF": {"deform": False}},
    "resolution K": {"K=32": {"resolution": 32}, "K=16": {"resolution": 16}, "K=64": {"resolution": 64}},
    "decoder size": {"tiny": {"width": "tiny"}, "small": {"width": "small"}, "medium": {"width": "medium"}},
    "auto-decoder vs auto-encoder": {"auto-decoder": {"autoencoder": False}, "auto-encoder": {"autoencoder": True}},
    "bits (weights and features)": {
        "6 bits": {"weight_bits": 6, "feature_bits": 6},
        "8 bits": {"weight_bits": 8, "feature_bits": 8},
        "4 bits": {"weight_bits": 4, "feature_bits": 4},
    },
    RATE_CURVE: {
        f"{width}, {bits} bits": {"width": width, "weight_bits": bits, "feature_bits": bits, "curve": "rate"}
        for width, bits in (
            ("tiny", 4),
            ("tiny", 5),
            ("small", 4),
            (10, 6),
            ("small", 5),
            ("medium", 4),
            ("medium", 5),
            ("medium", 6),
        )
    },
    "rate term lambda_R": {
        "lambda_R 0": {"lambda_rate": 0.0},
        "lambda_R 1": {"lambda_rate": 1.0},
        "lambda_R 0.05": {"lambda_rate": 0.05},
        "lambda_R 3": {"lambda_rate": 3.0},
    },
}


def unavailable_notes(peers: list[str] | None) -> list[str]:
    """A plain note per chosen peer that cannot run here (e.g. G-PCC without ``tmc3``): the run goes on without it."""
    notes = []
    for name in peers or []:
        available, why = get_codec(name).available()
        if not available:
            notes.append(f"{name} was not run: {why}")
    return notes


def necgs_settings(width: str, preset: str, ssim: bool, deform: bool, autoencoder: bool, epochs: int | None) -> dict:
    """The NeCGS codec setting the controls describe (each within what the page may ask for).

    Raises:
        ConfigError: A value the page may not ask for (one line naming it).
    """
    controls = {"preset": preset, "width": width, "ssim": ssim, "deform": deform, "autoencoder": autoencoder}
    return page_setting({**controls, "epochs": epochs or None})


def ablation_variants(factor: str, values: list[str], base: dict) -> list[dict]:
    """NeCGS settings of an ablation: ``base`` with each chosen value of ``factor`` (reference first).

    Raises:
        NecgsError: Unknown factor or value, or fewer than two values.
    """
    if factor not in ABLATIONS:
        raise NecgsError(f"unknown ablation factor {factor!r}; choose one of {', '.join(ABLATIONS)}")
    known = ABLATIONS[factor]
    chosen = [v for v in known if v in (values or [])]
    unknown = [v for v in values or [] if v not in known]
    if unknown:
        raise NecgsError(f"{factor} has no variant {unknown[0]!r}; choose among {', '.join(known)}")
    if len(chosen) < 2:
        raise NecgsError(f"an ablation compares at least two variants: pick two or more values of {factor}")
    return [setting_dict(base, **known[v]) for v in chosen]
