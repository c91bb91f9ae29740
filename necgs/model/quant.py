"""Tensor quantization (paper appendix A.1, Eq. 5) with a straight-through gradient.

Q(x) = round((clamp(x, a, b) - a) / s) * s + a,  s = (b - a) / 2^N,

i.e. 2^N + 1 levels, so 0 is a level when a = -b. The paper fixes [a, b] = [-1, 1];
necgs also offers per-tensor symmetric ranges [-r, r] with r = max |x| (stored as a
float32 in the archive), which keeps small convolution weights from collapsing onto a
handful of levels.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class LearnedRange:
    """A symmetric grid [-r, r] whose half-range r is trained with the network (a learned step size).

    The step is 2r / 2^N as for :class:`QuantSpec`; ``r`` is a 0-dim tensor that receives the
    gradient of the loss (LSQ, Esser et al., ICLR 2020: rounding passes the gradient straight
    through, and r is pulled up by clipped values and down by the rounding error, with
    LSQ's gradient scale 1 / sqrt(numel * 2^(N-1))).

    Attributes:
        bits: N.
        r: 0-dim positive tensor, the half-range.
    """

    bits: int
    r: torch.Tensor

    @property
    def lo(self) -> torch.Tensor:
        """Lowest level (a tensor)."""
        return -self.r

    @property
    def hi(self) -> torch.Tensor:
        """Highest level (a tensor)."""
        return self.r

    @property
    def step(self) -> torch.Tensor:
        """Distance between two levels (a tensor)."""
        return 2 * self.r / 2**self.bits

    def frozen(self) -> QuantSpec:
        """The archive's spec for the current r (float32-rounded)."""
        r = float(np.float32(max(float(self.r.detach()), 1e-8)))
        return QuantSpec(self.bits, -r, r)


def _quantize_learned(x: torch.Tensor, spec: LearnedRange) -> torch.Tensor:
    half = 2 ** (spec.bits - 1)
    scale = 1.0 / math.sqrt(x.numel() * half)
    step = spec.r / half
    step = step * scale + (step - step * scale).detach()  # LSQ's gradient scale, same value
    v = (x / step).clamp(-half, half)
    differentiable = (v + (torch.round(v) - v).detach()) * step
    exact = quantize(x.detach(), spec.frozen())  # the stored levels, bit for bit
    return differentiable + (exact - differentiable).detach()


def quantize(x: torch.Tensor, spec: QuantSpec | LearnedRange) -> torch.Tensor:
    """Eq. 5 in the forward pass, identity gradient inside [lo, hi] (straight-through).

    With a :class:`LearnedRange` the same levels are computed from the trained r, and r
    gets a gradient too.
    """
    if isinstance(spec, LearnedRange):
        return _quantize_learned(x, spec)
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


@dataclass
class QuantizedTensor:
    """A tensor as the archive holds it: integer symbols on a quantization grid.

    Attributes:
        symbols: (prod(shape),) int64 level indices, 0 .. 2^N.
        spec: The grid the symbols index.
        shape: The tensor's shape.
    """

    symbols: np.ndarray
    spec: QuantSpec
    shape: tuple[int, ...]

    def value(self) -> torch.Tensor:
        """The dequantized float32 tensor."""
        return from_symbols(self.symbols, self.spec, self.shape)
