"""Entropy coders: round trips, efficiency, hostile input."""

import numpy as np
import pytest

from necgs.coding.entropy import (
    CODERS,
    EntropyModel,
    build_model,
    decode_symbols,
    decode_with_model,
    encode_symbols,
    encode_with_model,
    shared_model,
)
from necgs.errors import CorruptArchiveError

rng = np.random.default_rng(0)
STREAMS = {
    "uniform": rng.integers(0, 257, 20_000),
    "skewed": np.clip(np.round(rng.laplace(128, 3, 20_000)), 0, 256).astype(np.int64),
    "geometric": np.minimum(rng.geometric(0.3, 20_000), 300),
    "single": np.full(500, 9),
    "empty": np.zeros(0, dtype=np.int64),
    "large_alphabet": rng.integers(0, 65_537, 3_000),
}


def entropy_bytes(s):
    p = np.bincount(s) / s.size
    p = p[p > 0]
    return -(p * np.log2(p)).sum() * s.size / 8


@pytest.mark.parametrize("coder", CODERS)
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_round_trip(coder, name):
    s = STREAMS[name]
    used, blob = encode_symbols(s, coder)
    assert used == coder
    assert np.array_equal(decode_symbols(blob, s.size), s)


@pytest.mark.parametrize("coder", CODERS)
def test_one_likely_symbol_round_trips_even_as_an_empty_payload(coder):
    model = build_model(np.array([0, 1, 2, 3] * 10 + [0]), coder)
    payload = encode_with_model(np.array([0]), model)
    assert decode_with_model(payload, model, 1).tolist() == [0]


def test_auto_picks_the_smallest():
    for s in STREAMS.values():
        sizes = [len(encode_symbols(s, c)[1]) for c in CODERS]
        assert len(encode_symbols(s, "auto")[1]) == min(sizes)


def test_efficiency_against_entropy():
    s = STREAMS["skewed"]
    h = entropy_bytes(s)
    m_r, m_h = build_model(s, "rans"), build_model(s, "huffman")
    assert len(encode_with_model(s, m_r)) < 1.005 * h + 16
    assert len(encode_with_model(s, m_h)) < 1.08 * h


def test_shared_model_codes_streams_independently():
    streams = [STREAMS["skewed"][i * 1000 : (i + 1) * 1000] for i in range(5)]
    model = shared_model(streams)
    parsed, _ = EntropyModel.from_bytes(model.to_bytes())
    for s in streams:
        assert np.array_equal(decode_with_model(encode_with_model(s, model), parsed, s.size), s)


@pytest.mark.parametrize("coder", ["rans", "huffman", "raw"])
def test_garbage_gives_corrupt_archive_error_only(coder):
    s = STREAMS["skewed"][:2000]
    model = build_model(s, coder)
    payload = encode_with_model(s, model)
    r = np.random.default_rng(1)
    for _ in range(60):
        junk = r.integers(0, 256, r.integers(0, len(payload) + 8)).astype(np.uint8).tobytes()
        try:
            out = decode_with_model(junk, model, s.size)
            assert out.shape == (s.size,)
        except CorruptArchiveError:
            pass


def test_malformed_models():
    for junk in (b"", b"\x07" * 9, b"\x00\x00\x00\x00\x00\xff\xff\xff\xff"):
        with pytest.raises(CorruptArchiveError):
            EntropyModel.from_bytes(junk)
