"""Choosing and serializing a model per stream: categorical (entropy.py) or Laplace (laplace.py).

A serialized model starts with a tag byte: 0..2 are the categorical coders of
:class:`~necgs.coding.entropy.EntropyModel` (rans, huffman, raw), 3 is a
:class:`~necgs.coding.laplace.LaplaceModel`. A *chunk* is ``model + varint payload
length + payload``; the archive's weights section (format 1.2) is one chunk per decoder
tensor, or one chunk for all of them when one shared model is smaller.
"""

from __future__ import annotations

import numpy as np

from necgs.coding.entropy import (
    CODERS,
    EntropyModel,
    build_model,
    decode_with_model,
    encode_with_model,
    shared_model,
)
from necgs.coding.laplace import LAPLACE_TAG, LaplaceModel
from necgs.coding.varint import get_varints, put_varints
from necgs.errors import CorruptArchiveError

AnyModel = EntropyModel | LaplaceModel
#: Coder settings of :class:`~necgs.config.NecgsConfig`: "auto" tries every model.
CODER_CHOICES = ("auto", *CODERS, "laplace")


def model_from_bytes(data: bytes) -> tuple[AnyModel, int]:
    """Parse any serialized model; returns it and the bytes consumed."""
    if not data:
        raise CorruptArchiveError("entropy model is truncated")
    if data[0] == LAPLACE_TAG:
        return LaplaceModel.from_bytes(data)
    return EntropyModel.from_bytes(data)


def encode_stream(symbols: np.ndarray, model: AnyModel) -> bytes:
    """Payload of ``symbols`` under ``model``."""
    if isinstance(model, LaplaceModel):
        return model.encode(symbols)
    return encode_with_model(symbols, model)


def decode_stream(data: bytes, model: AnyModel, count: int) -> np.ndarray:
    """Exactly ``count`` unsigned symbols; :class:`CorruptArchiveError` on bad data."""
    if isinstance(model, LaplaceModel):
        return model.decode(data, count)
    return decode_with_model(data, model, count)


def _categorical_coders(coder: str) -> tuple[str, ...]:
    if coder == "auto":
        return CODERS
    return (coder,) if coder in CODERS else ()


def tensor_candidates(symbols: np.ndarray, bits: int, shape: tuple[int, ...], coder: str) -> list[AnyModel]:
    """Models worth trying for one quantized tensor.

    Args:
        symbols: (n,) unsigned symbols in 0 .. 2**bits.
        bits: Quantization bits N of the tensor.
        shape: The tensor's shape; a tensor with more than one dimension also gets a
            Laplace model per output channel (its first dimension).
        coder: "auto" (all), a categorical coder name, or "laplace" (one Laplace for the
            tensor: exactly the model the training rate term estimates).
    """
    out: list[AnyModel] = [build_model(symbols, c) for c in _categorical_coders(coder)]
    if coder in ("auto", "laplace"):
        out.append(LaplaceModel.fit(symbols, 2 ** (bits - 1), 1))
    if coder == "auto" and len(shape) > 1 and shape[0] > 1:
        out.append(LaplaceModel.fit(symbols, 2 ** (bits - 1), shape[0]))
    return out


def chunk_bytes(symbols: np.ndarray, model: AnyModel) -> bytes:
    """One chunk: serialized model, varint payload length, payload."""
    payload = encode_stream(symbols, model)
    return model.to_bytes() + put_varints(np.array([len(payload)])) + payload


def best_chunk(symbols: np.ndarray, candidates: list[AnyModel]) -> tuple[AnyModel, bytes]:
    """The candidate whose chunk is smallest, and that chunk."""
    if not candidates:
        raise ValueError("no entropy model to try")
    chunks = [(m, chunk_bytes(symbols, m)) for m in candidates]
    return min(chunks, key=lambda mc: len(mc[1]))


def read_chunk(data: bytes, pos: int, count: int) -> tuple[np.ndarray, AnyModel, int]:
    """Decode the chunk at ``pos`` holding ``count`` symbols; returns (symbols, model, next position)."""
    model, used = model_from_bytes(data[pos:])
    pos += used
    (length,), pos = get_varints(data, 1, pos)
    if pos + int(length) > len(data):
        raise CorruptArchiveError("entropy-coded chunk runs past its section")
    end = pos + int(length)
    return decode_stream(data[pos:end], model, count), model, end


def batch_feature_model(streams: np.ndarray, bits: int, coder: str) -> AnyModel:
    """The model shared by one batch's features that codes them in the fewest bytes.

    Args:
        streams: (M, C, P) unsigned feature symbols of M shapes (P = K'^3 per channel).
        bits: Quantization bits of the features.
        coder: "auto", a categorical coder name, or "laplace" (a Laplace per channel:
            exactly the models the training rate term estimates).
    """
    m, c, p = streams.shape
    flat = list(streams.reshape(m, c * p))
    candidates: list[AnyModel] = [shared_model(flat, name) for name in _categorical_coders(coder)]
    per_channel = streams.transpose(1, 0, 2).reshape(-1)  # (C, M * P): one group per channel
    if coder in ("auto", "laplace"):
        candidates.append(LaplaceModel.fit(per_channel, 2 ** (bits - 1), c))
    if coder == "auto":
        candidates.append(LaplaceModel.fit(per_channel, 2 ** (bits - 1), 1))
    if not candidates:
        raise ValueError(f"unknown coder {coder!r}")
    sizes = [len(mod.to_bytes()) + sum(len(encode_stream(s, mod)) for s in flat) for mod in candidates]
    return candidates[int(np.argmin(sizes))]
