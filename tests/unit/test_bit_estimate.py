"""Laplace models, the differentiable rate estimate, chunks and the 1.2 shape table."""

import numpy as np
import pytest
import torch

from necgs.coding.bit_estimate import codec_estimate_bytes, laplace_bits_torch, rate_term, signed_symbols, tensor_bits
from necgs.coding.laplace import LaplaceModel, fit_scale_codes, laplace_bits, scale_of
from necgs.coding.shape_table import pack_shapes, unpack_shapes
from necgs.coding.streams import best_chunk, read_chunk, tensor_candidates
from necgs.errors import CorruptArchiveError
from necgs.model.quant import QuantSpec, symmetric_spec, to_symbols

rng = np.random.default_rng(0)


def laplace_symbols(n, scale, bits=6):
    half = 2 ** (bits - 1)
    return np.clip(np.round(rng.laplace(0, scale, n)), -half, half).astype(np.int64) + half


@pytest.mark.parametrize("scale", [0.2, 1.5, 8.0])
@pytest.mark.parametrize("groups", [1, 4])
def test_laplace_round_trip_and_estimate_matches_real_bytes(scale, groups):
    s = np.concatenate([laplace_symbols(5000, scale * (1 + g)) for g in range(groups)])
    model = LaplaceModel.fit(s, 32, groups)
    parsed, used = LaplaceModel.from_bytes(model.to_bytes() + b"tail")
    assert used == len(model.to_bytes()) and np.array_equal(parsed.scale_codes, model.scale_codes)
    payload = model.encode(s)
    assert np.array_equal(parsed.decode(payload, s.size), s)
    real, est = 8 * len(payload), model.estimate_bits(s)
    assert abs(real - est) <= 0.01 * est + 64, (real, est)


def test_a_stream_that_codes_to_no_bytes_decodes():
    """A short stream can leave the rANS state within its head word: no bytes (a 1-value bias of a prior did)."""
    model = LaplaceModel(128, np.array([255], np.uint8))
    payload = model.encode(np.array([0]))
    assert payload == b""
    assert model.decode(payload, 1).tolist() == [0]
    with pytest.raises(CorruptArchiveError):
        model.decode(b"\x01\x02", 1)


def test_fitted_scale_is_the_cheapest_grid_scale():
    s = laplace_symbols(20_000, 3.0) - 32
    code = int(fit_scale_codes(s, 1, 32)[0])
    costs = [laplace_bits(s, np.full(s.size, b), 32).sum() for b in scale_of(np.array([code - 3, code, code + 3]))]
    assert costs[1] < costs[0] and costs[1] < costs[2]
    assert 2.5 < scale_of(np.array([code]))[0] < 3.5


def test_torch_bits_equal_numpy_bits_and_pull_towards_zero():
    q = torch.tensor([-32.0, -5.0, -1.0, 0.0, 1.0, 2.0, 30.0, 32.0], dtype=torch.float64)
    b = torch.full_like(q, 1.7)
    assert np.allclose(laplace_bits_torch(q, b, 32).numpy(), laplace_bits(q.numpy(), b.numpy(), 32))
    x = torch.randn(2000, dtype=torch.float64, generator=torch.Generator().manual_seed(5)).requires_grad_()
    spec = symmetric_spec(x, 6, True)
    tensor_bits(x, spec).backward()
    moved = x.detach() - 1e-3 * x.grad
    assert tensor_bits(moved, spec) < tensor_bits(x.detach(), spec)
    a = x.detach().abs()
    inside = (a > spec.step) & (a < spec.hi)  # the float32-rounded range may clip the largest element
    assert torch.all(x.grad[inside] * x.detach()[inside] > 0)


def test_signed_symbols_are_the_archive_symbols():
    x = torch.randn(500)
    spec = symmetric_spec(x, 5, True)
    assert np.array_equal(signed_symbols(x, spec).detach().numpy().astype(np.int64) + 16, to_symbols(x, spec))


def test_rate_term_is_normalized_per_voxel_and_scales_with_the_set():
    params = {"a.weight": torch.randn(8, 4, 3, 3, 3, requires_grad=True), "a.bias": torch.randn(8, requires_grad=True)}
    specs = {n: symmetric_spec(t, 6, True) for n, t in params.items()}
    feats = torch.randn(2, 4, 2, 2, 2, requires_grad=True)
    fspec = symmetric_spec(feats, 6, True)
    r1 = rate_term(params, specs, feats, fspec, n_shapes=2, resolution=8)
    r4 = rate_term(params, specs, feats, fspec, n_shapes=4, resolution=8)
    w = sum(float(tensor_bits(t, specs[n])) for n, t in params.items())
    f = float(tensor_bits(feats.transpose(0, 1).reshape(4, -1), fspec, 4))
    assert float(r1) == pytest.approx((w + f) / (2 * 512), rel=1e-5)
    assert float(r4) == pytest.approx((w + 2 * f) / (4 * 512), rel=1e-5)
    r1.backward()
    assert feats.grad.abs().sum() > 0 and params["a.weight"].grad.abs().sum() > 0


def test_codec_estimate_matches_coded_bytes():
    weights = {
        "w": (laplace_symbols(30_000, 2.0), QuantSpec(6, -1, 1)),
        "b": (laplace_symbols(64, 4.0), QuantSpec(6, -1, 1)),
    }
    feats = np.stack([laplace_symbols(8 * 64, 3.0) for _ in range(20)]).reshape(20, 8, 64)
    est = codec_estimate_bytes(weights, feats, QuantSpec(6, -1, 1))
    real_w = sum(len(LaplaceModel.fit(s, 32).encode(s)) for s, _ in weights.values())
    assert est["weights_bytes"] == pytest.approx(real_w, rel=0.02)
    model = LaplaceModel.fit(feats.transpose(1, 0, 2).reshape(-1), 32, 8)
    real_f = sum(len(model.encode(f.reshape(-1))) for f in feats)
    assert est["features_bytes"] == pytest.approx(real_f, rel=0.03, abs=20 * 4)


def test_chunks_pick_the_smallest_model_and_read_back():
    s = laplace_symbols(3000, 0.8)
    candidates = tensor_candidates(s, 6, (10, 300), "auto")
    assert {m.coder for m in candidates} == {"rans", "huffman", "raw", "laplace", "laplace/10"}
    model, blob = best_chunk(s, candidates)
    decoded, parsed, end = read_chunk(blob + b"next", 0, s.size)
    assert np.array_equal(decoded, s) and end == len(blob) and parsed.coder == model.coder
    assert [m.coder for m in tensor_candidates(s, 6, (3000,), "huffman")] == ["huffman"]
    assert [m.coder for m in tensor_candidates(s, 6, (10, 300), "laplace")] == ["laplace"]


@pytest.mark.parametrize("junk", [b"", b"\x03", b"\x03\x00\x00\x01\x00\x00\x00", b"\x03\x20\x00\xff\xff\xff\xff\x01"])
def test_malformed_laplace_models_and_streams(junk):
    with pytest.raises(CorruptArchiveError):
        LaplaceModel.from_bytes(junk)
    model = LaplaceModel(32, np.array([60, 70], np.uint8))
    for data in (b"", b"abc", rng.integers(0, 256, 64).astype(np.uint8).tobytes()):
        try:
            out = model.decode(data, 100)
            assert out.shape == (100,) and out.min() >= 0 and out.max() <= 64
        except CorruptArchiveError:
            pass
    with pytest.raises(CorruptArchiveError, match="groups"):
        model.decode(b"\x00" * 8, 101)


def records(n):
    return [
        {
            "name": f"crane/mesh_{i:04d}",
            "transform": {"center": [0.1 * i, -2.5, 1e3], "scale": 0.37},
            "n_vertices": 10_002 + i,
            "n_faces": 20_000,
            "source_bytes": 812_345,
            "batch": i // 40,
        }
        for i in range(n)
    ]


def test_shape_table_round_trip_is_compact():
    recs = records(88)
    blob = pack_shapes(recs)
    assert len(blob) < 30 * 88
    back = unpack_shapes(blob)
    for r, b in zip(recs, back):
        assert b["name"] == r["name"] and b["batch"] == r["batch"] and b["n_vertices"] == r["n_vertices"]
        assert np.allclose(b["transform"]["center"], r["transform"]["center"], rtol=1e-7)
        assert b["transform"]["scale"] == pytest.approx(r["transform"]["scale"], rel=1e-7)
        assert b["ply_bytes"] > 12 * r["n_vertices"] + 13 * r["n_faces"]
    assert pack_shapes(back) == blob  # float32 values re-pack to the same bytes (growing an archive)


def test_hostile_shape_tables_raise_corrupt_archive_error():
    blob = pack_shapes(records(3))
    for n in range(len(blob)):
        with pytest.raises(CorruptArchiveError):
            unpack_shapes(blob[:n])
    with pytest.raises(CorruptArchiveError):
        unpack_shapes(blob + b"\x00")
    with pytest.raises(CorruptArchiveError):
        unpack_shapes(b"\xff\xff\xff\x0f")
    for i in range(len(blob)):
        damaged = bytearray(blob)
        damaged[i] ^= 0x80
        try:
            unpack_shapes(bytes(damaged))
        except CorruptArchiveError:
            pass


def test_training_with_lambda_rate_lowers_the_estimated_bits():
    from necgs.config import TrainConfig
    from necgs.model.decoder import DecoderConfig
    from necgs.training.train import train_autodecoder

    torch.manual_seed(0)
    volumes = torch.rand(2, 4, 8, 8, 8) * 2 - 1
    dcfg = DecoderConfig(resolution=8, feature_resolution=2, feature_channels=4, widths=(4, 4, 4))
    bits = []
    for lam in (0.0, 100.0):
        tcfg = TrainConfig(epochs=30, batch_size=2, checkpoint_every=0, lambda_rate=lam, device="cpu", mode="dense")
        codec = train_autodecoder(volumes, dcfg, tcfg, progress=False)
        f = codec.features
        est = codec_estimate_bytes(
            {n: (q.symbols, q.spec) for n, q in codec.weights.items()},
            f.symbols.reshape(f.shape[0], f.shape[1], -1),
            f.spec,
        )
        bits.append(est["weights_bytes"] + est["features_bytes"])
    assert bits[1] < 0.9 * bits[0], bits  # 30 epochs: about -18%


def test_a_decoder_s_bits_in_one_pass_equal_its_tensors_bits_one_by_one():
    from necgs.coding.bit_estimate import decoder_bits, tensor_bits
    from necgs.coding.laplace import fit_segment_scale_codes
    from necgs.model.quant import QuantSpec

    torch.manual_seed(0)
    params = {
        "a": (0.3 * torch.randn(40, 3)).requires_grad_(),
        "b": torch.zeros(7, requires_grad=True),  # every symbol zero
        "c": (5.0 * torch.randn(2, 2, 5)).requires_grad_(),  # many at the ends of the range
    }
    specs = {"a": QuantSpec(6, -1.0, 1.0), "b": QuantSpec(6, -0.5, 0.5), "c": QuantSpec(6, -2.0, 2.0)}
    together = decoder_bits(params, specs)
    (g_together,) = torch.autograd.grad(together, [params["a"]])
    apart = sum(tensor_bits(t, specs[n]) for n, t in params.items())
    (g_apart,) = torch.autograd.grad(apart, [params["a"]])
    assert torch.allclose(together, apart, rtol=1e-5) and torch.allclose(g_together, g_apart, rtol=1e-5)
    signed = np.concatenate([np.arange(-3, 4), np.zeros(5, int), np.full(4, 32)])
    codes = fit_segment_scale_codes(signed, np.array([7, 5, 4]), 32)
    expected = [fit_scale_codes(x, 1, 32)[0] for x in np.split(signed, [7, 12])]
    assert codes.tolist() == expected and len(set(expected)) == 3
    mixed = {**specs, "b": QuantSpec(4, -0.5, 0.5)}  # bit depths differ: tensor by tensor
    assert torch.allclose(decoder_bits(params, mixed), sum(tensor_bits(t, mixed[n]) for n, t in params.items()))
