"""Entropy coders for streams of non-negative integer symbols.

Three coders, each with a compact serialized model so that several streams (e.g. every
shape's feature) can share one model and still be decoded independently:

- ``"huffman"``: the paper's coder; canonical Huffman codes limited to 16 bits,
  written by us.
- ``"rans"``: range-variant ANS from the ``constriction`` library with a categorical
  model built from the symbol counts; within a fraction of a percent of the entropy.
- ``"raw"``: fixed-width bit packing, for tiny streams where a model costs more than it saves.

Decoders are safe on hostile input: the caller bounds the symbol count, and anything
malformed raises :class:`~necgs.errors.CorruptArchiveError`.
"""

from __future__ import annotations

import heapq
import struct
from dataclasses import dataclass

import constriction
import numpy as np

from necgs.coding.varint import get_varints, put_varints
from necgs.errors import CorruptArchiveError

CODERS = ("rans", "huffman", "raw")
#: Largest alphabet (symbols 0 .. MAX_SYMBOL) any coder accepts.
MAX_SYMBOL = 2**16
#: Longest Huffman code, in bits.
MAX_CODE_LENGTH = 16


# ---------------------------------------------------------------------------- model
@dataclass(frozen=True)
class EntropyModel:
    """A coder and the symbol statistics it codes with.

    Attributes:
        coder: One of :data:`CODERS`.
        offset: Smallest symbol of the alphabet.
        counts: (A,) int64 counts of symbols offset .. offset + A - 1 (raw: all ones).
    """

    coder: str
    offset: int
    counts: np.ndarray

    @property
    def alphabet(self) -> int:
        """Number of symbols the model covers."""
        return int(self.counts.shape[0])

    def to_bytes(self) -> bytes:
        """Compact serialization: coder id, offset, alphabet size, counts as varints."""
        head = struct.pack("<BII", CODERS.index(self.coder), self.offset, self.alphabet)
        return head if self.coder == "raw" else head + put_varints(self.counts)

    @classmethod
    def from_bytes(cls, data: bytes) -> tuple[EntropyModel, int]:
        """Parse a model; returns it and the number of bytes consumed."""
        if len(data) < 9:
            raise CorruptArchiveError("entropy model is truncated")
        coder_id, offset, alphabet = struct.unpack_from("<BII", data, 0)
        if coder_id >= len(CODERS) or alphabet < 1 or offset + alphabet > MAX_SYMBOL + 1:
            raise CorruptArchiveError("entropy model has an invalid coder or alphabet")
        coder = CODERS[coder_id]
        if coder == "raw":
            return cls(coder, offset, np.ones(alphabet, dtype=np.int64)), 9
        if alphabet > len(data):  # every count takes at least one byte
            raise CorruptArchiveError("entropy model is truncated")
        counts, pos = get_varints(data, alphabet, 9)
        if counts.sum() <= 0:
            raise CorruptArchiveError("entropy model has no symbols")
        return cls(coder, offset, counts), pos


def _check_symbols(symbols: np.ndarray) -> np.ndarray:
    s = np.asarray(symbols).reshape(-1)
    if s.size and (s.min() < 0 or s.max() > MAX_SYMBOL):
        raise ValueError(f"symbols must lie in [0, {MAX_SYMBOL}]")
    return s.astype(np.int64)


def build_model(symbols: np.ndarray, coder: str) -> EntropyModel:
    """Model of ``coder`` fitted to the symbol statistics of ``symbols``."""
    if coder not in CODERS:
        raise ValueError(f"unknown coder {coder!r}")
    s = _check_symbols(symbols)
    lo = int(s.min()) if s.size else 0
    hi = int(s.max()) if s.size else 0
    counts = np.bincount(s - lo, minlength=hi - lo + 1).astype(np.int64) if s.size else np.ones(1, np.int64)
    if coder == "raw":
        return EntropyModel("raw", lo, np.ones(hi - lo + 1, dtype=np.int64))
    return EntropyModel(coder, lo, counts)


# ---------------------------------------------------------------------------- raw
def _raw_width(model: EntropyModel) -> int:
    return max(int(model.alphabet - 1).bit_length(), 0)


def _encode_raw(s: np.ndarray, model: EntropyModel) -> bytes:
    width = _raw_width(model)
    if width == 0 or s.size == 0:
        return b""
    bits = ((s[:, None] - model.offset) >> np.arange(width - 1, -1, -1)) & 1
    return np.packbits(bits.astype(np.uint8).reshape(-1)).tobytes()


def _decode_raw(data: bytes, model: EntropyModel, count: int) -> np.ndarray:
    width = _raw_width(model)
    if width == 0:
        return np.full(count, model.offset, dtype=np.int64)
    if len(data) * 8 < count * width:
        raise CorruptArchiveError("raw stream is shorter than its symbol count")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * width].reshape(count, width)
    values = bits.astype(np.int64) @ (1 << np.arange(width - 1, -1, -1))
    if values.size and values.max() >= model.alphabet:
        raise CorruptArchiveError("raw stream holds a symbol outside its alphabet")
    return values + model.offset


# ---------------------------------------------------------------------------- huffman
def _code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code length of every symbol with a nonzero count, limited to 16 bits."""
    c = counts.astype(np.float64)
    while True:
        lengths = _huffman_lengths(c)
        if lengths.max(initial=0) <= MAX_CODE_LENGTH:
            return lengths
        c = np.where(c > 0, np.ceil(np.sqrt(c)), 0)  # flatten the distribution and retry


def _huffman_lengths(counts: np.ndarray) -> np.ndarray:
    used = np.nonzero(counts)[0]
    lengths = np.zeros(counts.shape[0], dtype=np.int64)
    if used.size == 1:
        lengths[used] = 1
        return lengths
    heap = [(float(counts[i]), int(i), (int(i),)) for i in used]
    heapq.heapify(heap)
    while len(heap) > 1:
        c1, k1, s1 = heapq.heappop(heap)
        c2, k2, s2 = heapq.heappop(heap)
        for sym in s1 + s2:
            lengths[sym] += 1
        heapq.heappush(heap, (c1 + c2, min(k1, k2), s1 + s2))
    return lengths


def _canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code of each symbol (0 where unused), from the code lengths."""
    codes = np.zeros(lengths.shape[0], dtype=np.int64)
    order = sorted((int(n), int(s)) for s, n in enumerate(lengths) if n > 0)
    code, prev = 0, order[0][0] if order else 0
    for i, (length, sym) in enumerate(order):
        if i:
            code = (code + 1) << (length - prev)
        codes[sym] = code
        prev = length
    return codes


def _encode_huffman(s: np.ndarray, model: EntropyModel) -> bytes:
    if s.size == 0:
        return b""
    lengths = _code_lengths(model.counts)
    codes = _canonical_codes(lengths)
    idx = s - model.offset
    ln, cd = lengths[idx], codes[idx]
    if np.any(ln == 0):
        raise ValueError("a symbol is missing from the Huffman model")
    shifts = np.arange(MAX_CODE_LENGTH - 1, -1, -1)
    bits = (cd[:, None] << (MAX_CODE_LENGTH - ln[:, None])) >> shifts & 1
    keep = np.arange(MAX_CODE_LENGTH)[None, :] < ln[:, None]
    return np.packbits(bits[keep].astype(np.uint8)).tobytes()


def _decode_huffman(data: bytes, model: EntropyModel, count: int) -> np.ndarray:
    lengths = _code_lengths(model.counts)
    codes = _canonical_codes(lengths)
    table_sym = np.full(1 << MAX_CODE_LENGTH, -1, dtype=np.int64)
    table_len = np.zeros(1 << MAX_CODE_LENGTH, dtype=np.int64)
    for sym in np.nonzero(lengths)[0]:
        span = 1 << (MAX_CODE_LENGTH - lengths[sym])
        start = codes[sym] << (MAX_CODE_LENGTH - lengths[sym])
        table_sym[start : start + span] = sym
        table_len[start : start + span] = lengths[sym]
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    nbits = bits.size
    padded = np.concatenate([bits, np.zeros(MAX_CODE_LENGTH, dtype=np.uint8)]).astype(np.int64)
    # windows[p] = the next 16 bits from bit p, as an integer (vectorized once)
    weights = 1 << np.arange(MAX_CODE_LENGTH - 1, -1, -1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, MAX_CODE_LENGTH)[: nbits + 1] @ weights
    out = np.empty(count, dtype=np.int64)
    pos = 0
    sym_t, len_t = table_sym.tolist(), table_len.tolist()
    win = windows.tolist()
    for i in range(count):
        if pos >= nbits:
            raise CorruptArchiveError("Huffman stream ends before its symbol count")
        w = win[pos]
        sym = sym_t[w]
        if sym < 0:
            raise CorruptArchiveError("Huffman stream holds an invalid code")
        out[i] = sym
        pos += len_t[w]
    if pos > nbits:
        raise CorruptArchiveError("Huffman stream ends before its symbol count")
    return out + model.offset


# ---------------------------------------------------------------------------- rANS
def _rans_model(model: EntropyModel):
    p = model.counts.astype(np.float64)
    p = np.maximum(p, 0)
    return constriction.stream.model.Categorical(p / p.sum(), perfect=False)


def _encode_rans(s: np.ndarray, model: EntropyModel) -> bytes:
    if s.size == 0:
        return b""
    idx = (s - model.offset).astype(np.int32)
    if np.any(model.counts[idx] == 0):
        raise ValueError("a symbol is missing from the rANS model")
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(idx, _rans_model(model))
    return coder.get_compressed().astype("<u4").tobytes()


def _decode_rans(data: bytes, model: EntropyModel, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if len(data) % 4:  # empty is valid: constriction writes no word for a state that fits in its head
        raise CorruptArchiveError("rANS stream has an invalid length")
    try:
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        out = np.asarray(coder.decode(_rans_model(model), count), dtype=np.int64)
    except Exception as exc:  # constriction raises its own types on corrupt input
        raise CorruptArchiveError(f"rANS stream is corrupt ({type(exc).__name__})") from None
    if out.shape != (count,) or (out.size and (out.min() < 0 or out.max() >= model.alphabet)):
        raise CorruptArchiveError("rANS stream decodes to symbols outside its alphabet")
    return out + model.offset


_ENCODERS = {"raw": _encode_raw, "huffman": _encode_huffman, "rans": _encode_rans}
_DECODERS = {"raw": _decode_raw, "huffman": _decode_huffman, "rans": _decode_rans}


def encode_with_model(symbols: np.ndarray, model: EntropyModel) -> bytes:
    """Encode ``symbols`` (every one covered by ``model``) to bytes.

    A one-symbol alphabet needs no payload at all, whatever the coder.
    """
    s = _check_symbols(symbols)
    if model.alphabet == 1:
        if s.size and np.any(s != model.offset):
            raise ValueError("a symbol is missing from the model")
        return b""
    return _ENCODERS[model.coder](s, model)


def decode_with_model(data: bytes, model: EntropyModel, count: int) -> np.ndarray:
    """Decode exactly ``count`` symbols; raises :class:`CorruptArchiveError` on bad data."""
    if count < 0:
        raise CorruptArchiveError("negative symbol count")
    if model.alphabet == 1:
        return np.full(count, model.offset, dtype=np.int64)
    return _DECODERS[model.coder](bytes(data), model, count)


def encode_symbols(symbols: np.ndarray, coder: str = "auto") -> tuple[str, bytes]:
    """Encode a stream with its own model prepended; ``"auto"`` keeps the smallest coder.

    Returns:
        (coder name, bytes = model + payload).
    """
    s = _check_symbols(symbols)
    candidates = CODERS if coder == "auto" else (coder,)
    best: tuple[str, bytes] | None = None
    for name in candidates:
        model = build_model(s, name)
        blob = model.to_bytes() + encode_with_model(s, model)
        if best is None or len(blob) < len(best[1]):
            best = (name, blob)
    assert best is not None
    return best


def decode_symbols(data: bytes, count: int) -> np.ndarray:
    """Inverse of :func:`encode_symbols` (the coder is read from the model)."""
    model, pos = EntropyModel.from_bytes(bytes(data))
    return decode_with_model(bytes(data)[pos:], model, count)


def shared_model(streams: list[np.ndarray], coder: str = "auto") -> EntropyModel:
    """The model that codes all ``streams`` (each coded separately) in the fewest bytes."""
    joined = np.concatenate([_check_symbols(s) for s in streams]) if streams else np.zeros(0, np.int64)
    candidates = CODERS if coder == "auto" else (coder,)
    best, best_size = None, None
    for name in candidates:
        model = build_model(joined, name)
        size = len(model.to_bytes()) + sum(len(encode_with_model(s, model)) for s in streams)
        if best_size is None or size < best_size:
            best, best_size = model, size
    assert best is not None
    return best
