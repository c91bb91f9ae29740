"""Tensor quantization (paper appendix A.1, Eq. 5) with a straight-through gradient.

Q(x) = round((clamp(x, a, b) - a) / s) * s + a,  s = (b - a) / 2^N,

i.e. 2^N + 1 levels, so 0 is a level when a = -b. The paper fixes [a, b] = [-1, 1];
necgs also offers per-tensor symmetric ranges [-r, r] with r = max |x| (stored as a
float32 in the archive), which keeps small convolution weights from collapsing onto a
handful of levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class QuantSpec:
    """A quantization grid: ``2**bits + 1`` levels evenly spaced on [lo, hi]."""

    bits: int
    lo: float = -1.0
    hi: float = 1.0

    @property
    def step(self) -> float:
        """Distance between two levels."""
        return (self.hi - self.lo) / (2**self.bits)

    @property
    def levels(self) -> int:
        """Number of levels (symbols 0 .. levels - 1)."""
        return 2**self.bits + 1

    def to_dict(self) -> dict:
        """JSON-ready form; ``lo``/``hi`` rounded to float32 so the archive reproduces them."""
        return {"bits": self.bits, "lo": float(np.float32(self.lo)), "hi": float(np.float32(self.hi))}

    @classmethod
    def from_dict(cls, data: dict) -> QuantSpec:
        """Inverse of :meth:`to_dict` (validates the values)."""
        bits, lo, hi = int(data["bits"]), float(data["lo"]), float(data["hi"])
        if not 1 <= bits <= 16 or not (np.isfinite(lo) and np.isfinite(hi)) or not lo < hi:
            raise ValueError(f"invalid quantization spec {data!r}")
        return cls(bits, lo, hi)


def symmetric_spec(x: torch.Tensor, bits: int, per_tensor: bool) -> QuantSpec:
    """The spec for ``x``: [-max|x|, max|x|] (float32-rounded) if ``per_tensor`` else [-1, 1]."""
    if not per_tensor:
        return QuantSpec(bits)
    r = float(np.float32(max(float(x.detach().abs().max()), 1e-8)))
    return QuantSpec(bits, -r, r)


def quantize(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Eq. 5 in the forward pass, identity gradient inside [lo, hi] (straight-through)."""
    lo, hi, step = spec.lo, spec.hi, spec.step
    clamped = x.clamp(lo, hi)
    q = torch.round((clamped - lo) / step) * step + lo
    return clamped + (q - clamped).detach()


def to_symbols(x: torch.Tensor, spec: QuantSpec) -> np.ndarray:
    """Integer level index (0 .. 2^N) of every element of ``x``, flattened, int64."""
    idx = torch.round((x.detach().clamp(spec.lo, spec.hi) - spec.lo) / spec.step)
    return idx.to(torch.int64).reshape(-1).cpu().numpy()


def from_symbols(symbols: np.ndarray, spec: QuantSpec, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`to_symbols`: float32 tensor of ``shape`` with the level values.

    Computed exactly as :func:`quantize` computes levels, so decoding is bit-identical.
    """
    idx = torch.as_tensor(np.asarray(symbols, dtype=np.int64)).reshape(shape).to(torch.float32)
    return idx * spec.step + spec.lo
