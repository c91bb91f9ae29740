"""Discretized zero-mean Laplace models for signed quantization symbols, one scale per group.

A quantized tensor with ``2**N + 1`` levels has unsigned symbols ``s`` in [0, 2R],
R = 2**(N - 1), and signed symbols ``q = s - R`` (0 is the level 0.0). The model gives
symbol q the mass of a zero-mean Laplace distribution of scale b on [q - 1/2, q + 1/2]:

    p(0) = 1 - exp(-1 / (2b)),    p(q) = 1/2 exp(-(|q| - 1/2) / b) (1 - exp(-1/b))  (0 < |q| < R),

and the two end symbols also the tails beyond them: p(+-R) = 1/2 exp(-(R - 1/2) / b).

A stream is split into G equal consecutive groups with a scale each: G = 1 codes a tensor
with one model, G = C codes a (C, K', K', K') feature with a model per channel, G = O
codes a convolution weight (O, I, 3, 3, 3) with a model per output channel.

Scales are not free floats: each is one byte ``k`` on the grid ``b = 2**(k / 8 - 8)``
(1/256 .. 2**23.9, 9% apart, fine enough that a scale off the grid costs next to nothing), and
:func:`fit_scale_codes` picks, per group, the grid scale that codes that group's symbols
in the fewest bits. The training rate term (:mod:`necgs.coding.bit_estimate`) evaluates
exactly these formulas and picks its scales the same way, so what training estimated is
what the archive codes: the coder is constriction's rANS with a ``Categorical`` table per
group computed from the grid scale (20-bit counts), within a fraction of a percent of
:func:`laplace_bits` (a test checks it). A table rather than constriction's
``QuantizedLaplace``, because per-symbol Laplace parameters decode several times slower
(measurements: docs/ARCHITECTURE.md, 'Decisions and why', "Entropy coding").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import constriction
import numpy as np

from necgs.errors import CorruptArchiveError

#: First byte of a serialized Laplace model (0..2 are the categorical coders of entropy.py).
LAPLACE_TAG = 3
#: Scale code k means b = 2 ** (k / SCALE_STEPS_PER_OCTAVE + SCALE_LOG2_MIN).
SCALE_STEPS_PER_OCTAVE = 8
SCALE_LOG2_MIN = -8.0
SCALE_CODES = 256
#: Largest half range R (16-bit quantization).
MAX_HALF_RANGE = 2**15
#: Probabilities are rounded to multiples of 2**-PRECISION_BITS before coding (see
#: :meth:`LaplaceModel.group_probabilities`), so no symbol costs more than this many bits.
PRECISION_BITS = 20
MAX_SYMBOL_BITS = float(PRECISION_BITS)


def scale_of(codes: np.ndarray) -> np.ndarray:
    """Laplace scale b (float64) of each scale code (uint8-valued)."""
    return np.exp2(np.asarray(codes, dtype=np.float64) / SCALE_STEPS_PER_OCTAVE + SCALE_LOG2_MIN)


def _nll_bits_grid(stats: tuple[np.ndarray, ...], scales: np.ndarray) -> np.ndarray:
    """Bits of G groups under each of S scales, from their sufficient statistics.

    Args:
        stats: (n_zero, n_inner, n_end, excess), each (G,): counts of zero symbols, of
            symbols with 0 < |q| < R and with |q| = R, and the sum of |q| - 1/2 over all
            nonzero symbols.
        scales: (S,) candidate scales b.

    Returns:
        (G, S) bits.
    """
    n_zero, n_inner, n_end, excess = (x[:, None] for x in stats)
    inv = 1.0 / scales[None, :]
    nats = -(
        n_zero * np.log(-np.expm1(-0.5 * inv))
        + (n_inner + n_end) * np.log(0.5)
        - excess * inv
        + n_inner * np.log(-np.expm1(-inv))
    )
    return nats / np.log(2.0)


def segment_stats(signed: np.ndarray, sizes: np.ndarray, half_range: int) -> tuple[np.ndarray, ...]:
    """(n_zero, n_inner, n_end, excess) of each consecutive segment of ``signed``.

    ``sizes`` are the segments' lengths, each >= 1 (or all 0 when ``signed`` is empty).
    """
    a = np.abs(np.asarray(signed, dtype=np.int64))
    if not a.size:
        return tuple(np.zeros(len(sizes)) for _ in range(4))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nz, end = a > 0, a >= half_range
    return tuple(
        np.add.reduceat(x.astype(np.float64), starts) for x in (~nz, nz & ~end, end, np.where(nz, a - 0.5, 0.0))
    )


def fit_scale_codes(signed: np.ndarray, groups: int, half_range: int) -> np.ndarray:
    """Per group, the scale code whose model codes the group's symbols in the fewest bits.

    Args:
        signed: (n,) signed symbols in -R .. R, n a multiple of ``groups``.
        groups: G, equal consecutive groups.
        half_range: R.

    Returns:
        (G,) uint8 scale codes.

    Raises:
        ValueError: n is not a multiple of G.
    """
    n = np.asarray(signed).size
    if n % groups:
        raise ValueError(f"{n} symbols do not split into {groups} equal groups")
    return fit_segment_scale_codes(signed, np.full(groups, n // groups), half_range)


def fit_segment_scale_codes(signed: np.ndarray, sizes: np.ndarray, half_range: int) -> np.ndarray:
    """:func:`fit_scale_codes` with one group per consecutive segment of any length.

    Args:
        signed: (n,) signed symbols in -R .. R.
        sizes: (G,) segment lengths (each >= 1), summing to n.
        half_range: R.

    Returns:
        (G,) uint8 scale codes, the code each segment gets from ``fit_scale_codes(segment, 1, R)``.
    """
    bits = _nll_bits_grid(segment_stats(signed, sizes, half_range), scale_of(np.arange(SCALE_CODES)))
    return bits.argmin(1).astype(np.uint8)


def laplace_bits(signed: np.ndarray, scales: np.ndarray, half_range: int) -> np.ndarray:
    """Bits of every signed symbol under the Laplace of its scale (the estimate).

    Args:
        signed: (n,) signed symbols in -R .. R.
        scales: (n,) scale b of each symbol's model.
        half_range: R.
    """
    a = np.abs(np.asarray(signed, dtype=np.float64))
    inv = 1.0 / np.asarray(scales, dtype=np.float64)
    tail = np.log(0.5) - (a - 0.5) * inv
    log_p = np.where(
        a == 0, np.log(-np.expm1(-0.5 * inv)), np.where(a >= half_range, tail, tail + np.log(-np.expm1(-inv)))
    )
    return np.minimum(-log_p / np.log(2.0), MAX_SYMBOL_BITS)


@dataclass(frozen=True)
class LaplaceModel:
    """Zero-mean discretized Laplace models over signed symbols -R..R, one per group.

    Attributes:
        half_range: R; unsigned symbols are 0 .. 2R.
        scale_codes: (G,) uint8 scale codes, one per group of consecutive symbols.
    """

    half_range: int
    scale_codes: np.ndarray

    @property
    def groups(self) -> int:
        """G, the number of groups (and of scales)."""
        return int(self.scale_codes.shape[0])

    @property
    def coder(self) -> str:
        """Name shown in section descriptions."""
        return "laplace" if self.groups == 1 else f"laplace/{self.groups}"

    def to_bytes(self) -> bytes:
        """Tag byte, u16 R, u32 G, then one byte per group."""
        return (
            struct.pack("<BHI", LAPLACE_TAG, self.half_range, self.groups) + self.scale_codes.astype(np.uint8).tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[LaplaceModel, int]:
        """Parse a model; returns it and the number of bytes consumed."""
        if len(data) < 7 or data[0] != LAPLACE_TAG:
            raise CorruptArchiveError("Laplace model is truncated or mislabelled")
        _, half_range, groups = struct.unpack_from("<BHI", data, 0)
        if not 1 <= half_range <= MAX_HALF_RANGE or groups < 1 or 7 + groups > len(data):
            raise CorruptArchiveError("Laplace model has an invalid range or group count")
        codes = np.frombuffer(data, dtype=np.uint8, count=groups, offset=7).copy()
        return cls(half_range, codes), 7 + groups

    @classmethod
    def fit(cls, symbols: np.ndarray, half_range: int, groups: int = 1) -> LaplaceModel:
        """The model of the fewest bits for unsigned ``symbols`` (0 .. 2R) split into ``groups``."""
        s = np.asarray(symbols, dtype=np.int64).reshape(-1)
        if groups < 1 or s.size % groups:
            raise ValueError(f"{s.size} symbols do not split into {groups} equal groups")
        codes = fit_scale_codes(s - half_range, groups, half_range) if s.size else np.zeros(groups, np.uint8)
        return cls(half_range, codes)

    def symbol_scales(self, count: int) -> np.ndarray:
        """(count,) float64 scale of every symbol of a stream of ``count`` symbols."""
        if count % self.groups:
            raise CorruptArchiveError(f"{count} symbols do not split into the model's {self.groups} groups")
        return np.repeat(scale_of(self.scale_codes), count // self.groups)

    def estimate_bits(self, symbols: np.ndarray) -> float:
        """Estimated payload bits of unsigned ``symbols`` (the formula training uses)."""
        s = np.asarray(symbols, dtype=np.int64).reshape(-1)
        return float(laplace_bits(s - self.half_range, self.symbol_scales(s.size), self.half_range).sum())

    def group_probabilities(self) -> np.ndarray:
        """(G, 2R + 1) float64 probabilities of symbols 0 .. 2R, one row per group.

        Rounded to multiples of 2**-:data:`PRECISION_BITS` (every symbol at least one), so
        that encoder and decoder build the same tables even where ``exp`` differs in its
        last bit between machines; constriction's ``Categorical`` codes with them.
        """
        q = np.arange(-self.half_range, self.half_range + 1, dtype=np.float64)
        bits = laplace_bits(q[None, :], scale_of(self.scale_codes)[:, None], self.half_range)
        counts = np.maximum(np.round(np.exp2(PRECISION_BITS - bits)), 1.0)
        return counts / counts.sum(1, keepdims=True)

    def encode(self, symbols: np.ndarray) -> bytes:
        """rANS-code unsigned ``symbols`` (each in 0 .. 2R), group by group."""
        s = np.asarray(symbols, dtype=np.int64).reshape(-1)
        if s.size == 0:
            return b""
        if s.min() < 0 or s.max() > 2 * self.half_range:
            raise ValueError(f"symbols must lie in [0, {2 * self.half_range}]")
        if s.size % self.groups:
            raise ValueError(f"{s.size} symbols do not split into the model's {self.groups} groups")
        probs = self.group_probabilities()
        coder = constriction.stream.stack.AnsCoder()
        for g, part in reversed(list(enumerate(s.reshape(self.groups, -1)))):  # a stack: last group first
            coder.encode_reverse(part.astype(np.int32), constriction.stream.model.Categorical(probs[g], perfect=False))
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, count: int) -> np.ndarray:
        """Decode exactly ``count`` unsigned symbols; :class:`CorruptArchiveError` on bad data."""
        if count < 0:
            raise CorruptArchiveError("negative symbol count")
        if count % self.groups:
            raise CorruptArchiveError(f"{count} symbols do not split into the model's {self.groups} groups")
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if len(data) % 4:  # empty is valid: constriction writes no word for a state that fits in its head
            raise CorruptArchiveError("Laplace stream has an invalid length")
        probs = self.group_probabilities()
        try:
            coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
            parts = [
                coder.decode(constriction.stream.model.Categorical(p, perfect=False), count // self.groups)
                for p in probs
            ]
            out = np.concatenate(parts).astype(np.int64)
        except Exception as exc:  # constriction raises its own types on corrupt input
            raise CorruptArchiveError(f"Laplace stream is corrupt ({type(exc).__name__})") from None
        if out.shape != (count,) or out.min() < 0 or out.max() > 2 * self.half_range:
            raise CorruptArchiveError("Laplace stream decodes to symbols outside its range")
        return out
