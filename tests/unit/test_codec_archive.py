"""Format 1.2 mesh-set archives written from synthetic codecs (no training): layout, estimate vs bytes."""

from dataclasses import replace

import numpy as np
import pytest

from necgs.coding.codec_archive import write_codec_archive
from necgs.compression import describe, open_archive
from necgs.config import FitConfig, NecgsConfig
from necgs.errors import ArchiveError
from necgs.model.decoder import Decoder
from necgs.model.quant import QuantizedTensor, QuantSpec
from necgs.training.train import TrainedCodec

CFG = NecgsConfig(fit=FitConfig(resolution=8), width=4, feature_channels=4, feature_resolution=2)
rng = np.random.default_rng(3)


def laplace_symbols(shape, scale, bits=6):
    half = 2 ** (bits - 1)
    n = int(np.prod(shape))
    return np.clip(np.round(rng.laplace(0, scale, n)), -half, half).astype(np.int64) + half


def codec(extra: dict | None = None, n_shapes=5, scale=1.5, cfg: NecgsConfig = CFG) -> TrainedCodec:
    dcfg = cfg.decoder()
    weights = {
        name: QuantizedTensor(laplace_symbols(t.shape, scale), QuantSpec(6, -0.5, 0.5), tuple(t.shape))
        for name, t in Decoder(dcfg).named_parameters()
    }
    weights.update(extra or {})
    fshape = (n_shapes, dcfg.feature_channels, 2, 2, 2)
    return TrainedCodec(dcfg, weights, QuantizedTensor(laplace_symbols(fshape, 2.0), QuantSpec(6, -1, 1), fshape))


def shapes(n):
    return [
        {
            "name": f"set/s{i:03d}",
            "transform": {"center": [1.0, 2.0, 3.0 + i], "scale": 0.25},
            "n_vertices": 100 + i,
            "n_faces": 196 + 2 * i,
            "source_bytes": 5000,
            "ply_bytes": 0,
            "batch": 0,
        }
        for i in range(n)
    ]


def test_any_named_tensors_round_trip_bit_exactly(tmp_path):
    """The lead's decoder grows tensors (coarse.weight/bias): weight coding takes any names."""
    extra = {
        "coarse.weight": QuantizedTensor(laplace_symbols((4, 4, 1, 1, 1), 1.0), QuantSpec(6, -1, 1), (4, 4, 1, 1, 1)),
        "coarse.bias": QuantizedTensor(laplace_symbols((4,), 1.0, bits=4), QuantSpec(4, -1, 1), (4,)),
    }
    c = codec(extra)
    path = tmp_path / "a.ncgs"
    write_codec_archive(path, CFG.to_dict(), c, shapes(5))
    with open_archive(path) as arc:
        assert arc.compact and arc.reader.version == (1, 2)
        back = arc.weights()
        assert list(back) == list(c.weights)
        for name, q in c.weights.items():
            assert np.array_equal(back[name].symbols, q.symbols) and back[name].spec == q.spec
        feats = np.stack([arc.feature_symbols(i) for i in range(5)])
        assert np.array_equal(feats.reshape(-1), c.features.symbols)
        assert [s["name"] for s in arc.shapes] == [f"set/s{i:03d}" for i in range(5)]


def test_a_tied_decoder_is_stored_once_and_rebuilt_from_the_archive(tmp_path):
    tied_cfg = replace(CFG, tied_modules=2)
    sizes = {}
    for name, cfg in (("plain", CFG), ("tied", tied_cfg)):
        c = codec(cfg=cfg)
        sizes[name] = write_codec_archive(tmp_path / f"{name}.ncgs", cfg.to_dict(), c, shapes(5))
        with open_archive(tmp_path / f"{name}.ncgs") as arc:
            assert arc.decoder_cfg == cfg.decoder()
            decoder = arc.decoder()
            assert decoder.param_count() == sum(q.symbols.size for q in c.weights.values())
    assert len(Decoder(tied_cfg.decoder()).ups) == 1
    assert sizes["tied"] < sizes["plain"]


def test_estimate_is_reported_beside_real_bytes_and_agrees(tmp_path):
    path = tmp_path / "a.ncgs"
    write_codec_archive(path, {**CFG.to_dict(), "coder": "laplace"}, codec(n_shapes=40), shapes(40))
    d = describe(path)
    assert d["coders"]["features.model.0"].startswith("laplace") and d["coders"]["weights"] == "per-tensor"
    est = d["rate_estimate"]
    n_tensors = len(open_archive(path).metadata["weights"]["order"])
    framing = n_tensors * (7 + 2 + 3) + 4 * 16  # per chunk: model, length, rANS word tail
    assert est["weights_bytes"] <= d["weights_bytes"] <= 1.03 * est["weights_bytes"] + framing
    lengths = 40 * 2 + 40 * 4  # varint length and rANS word tail per shape
    assert est["features_bytes"] <= d["feature_bytes"] <= 1.03 * est["features_bytes"] + lengths
    parts = d["header_bytes"] + d["weights_bytes"] + d["feature_bytes"] + d["feature_model_bytes"]
    assert parts == d["bytes"] and sum(s["feature_bytes"] for s in d["shapes"]) < d["feature_bytes"]


def test_auto_is_never_larger_than_any_forced_coder(tmp_path):
    sizes = {}
    for coder in ("auto", "rans", "huffman", "laplace"):
        path = tmp_path / f"{coder}.ncgs"
        sizes[coder] = write_codec_archive(path, {**CFG.to_dict(), "coder": coder}, codec(), shapes(5))
    assert sizes["auto"] <= min(sizes.values())


def test_damaged_1_2_archives_raise_only_archive_errors(tmp_path):
    path = tmp_path / "a.ncgs"
    write_codec_archive(path, CFG.to_dict(), codec(), shapes(5))
    blob = path.read_bytes()
    for n in range(0, len(blob), 7):
        with pytest.raises(ArchiveError):
            with open_archive(blob[:n]) as arc:
                arc.weights()
    for i in rng.integers(0, len(blob), 150).tolist():
        damaged = bytearray(blob)
        damaged[i] ^= 1 << int(rng.integers(8))
        try:
            with open_archive(bytes(damaged)) as arc:
                arc.weights()
                [arc.feature_symbols(k) for k in range(len(arc.shapes))]
        except ArchiveError:
            pass
