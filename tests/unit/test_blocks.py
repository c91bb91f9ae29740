"""Blocks of the output volume: a block decoded alone equals the same block of the dense decode,
the sampler draws where it says, the crop level follows the cost, sparse decoding skips the far field."""

import pytest
import torch

from necgs.model.blocks import (
    active_blocks,
    best_crop_level,
    block_macs,
    crop_levels,
    decode_sparse,
    decode_volume,
)
from necgs.model.decoder import BlockBatch, Decoder, decoder_config
from necgs.training.patches import BlockSampler, block_targets, coarse_targets


@pytest.mark.parametrize("K, size, tied", [(32, 8, 0), (32, 16, 0), (64, 16, 0), (64, 8, 0), (64, 8, 3)])
def test_block_decoded_alone_equals_the_dense_decode(K, size, tied):
    torch.manual_seed(K + size)
    dec = Decoder(decoder_config(K, 6, feature_channels=4, tied_modules=tied))
    features = torch.randn(3, 4, 4, 4, 4)
    specs = dec.quant_specs(6, True)  # the quantization-aware forward of training
    dense, coarse = dec(features, specs, with_coarse=True)
    for c in crop_levels(dec.cfg, size, need_coarse=True):
        unit = 2 ** (dec.cfg.modules - c)
        origins = torch.randint(0, (K - size) // unit + 1, (5, 3)) * unit
        origins[0], origins[1] = 0, K - size  # the grid's corners: zero padding must be reproduced
        index = torch.tensor([0, 2, 1, 1, 0])
        out, coarse_b = dec(features, specs, blocks=BlockBatch(index, origins, size, c), with_coarse=True)
        ref = torch.stack(
            [
                dense[s, :, a : a + size, b : b + size, d : d + size]
                for s, (a, b, d) in zip(index.tolist(), origins.tolist())
            ]
        )
        assert out.shape == (5, 4, size, size, size)
        assert torch.allclose(out, ref, atol=1e-5), (c, (out - ref).abs().max())
        assert torch.allclose(coarse_b, coarse, atol=1e-6)
        assert not torch.allclose(out[1:2], dense[2:3, :, :size, :size, :size], atol=1e-3)  # really block-specific


def test_crop_level_follows_the_cost_model():
    cfg = decoder_config(64, 8)
    assert crop_levels(cfg, 16, need_coarse=True) == [2, 3]
    few = best_crop_level(cfg, 16, shapes=4, blocks=4, need_coarse=True)
    many = best_crop_level(cfg, 16, shapes=1, blocks=64, need_coarse=True)
    assert block_macs(cfg, few, 4, 4, 16) <= block_macs(cfg, 3 if few == 2 else 2, 4, 4, 16)
    assert many == 3  # a whole volume of blocks: crop as late as possible
    # sixteen 16^3 blocks cost less than one dense K = 64 decode
    assert block_macs(cfg, few, 4, 16, 16) < block_macs(cfg, cfg.modules, 1, 0, 16)


def sphere_volumes(K: int, radii) -> torch.Tensor:
    g = torch.linspace(-1, 1, K)
    x, y, z = torch.meshgrid(g, g, g, indexing="ij")
    r = torch.sqrt(x**2 + y**2 + z**2)
    h = 2 / (K - 1)
    vols = []
    for rad in radii:
        tsdf = ((r - rad) / (2 * h)).clamp(-1, 1)
        vols.append(torch.cat([tsdf[None], torch.zeros(3, K, K, K)]))
    return torch.stack(vols)


def test_sampler_draws_band_and_far_blocks_as_asked():
    vols = sphere_volumes(32, [0.5, 0.3])
    sampler = BlockSampler(vols, 8, 4)
    assert 0 < sampler.band_share() < 1
    g = torch.Generator().manual_seed(0)
    blocks = sampler.sample([1, 0], 200, band_fraction=0.75, crop_level=1, generator=g)
    targets = block_targets(vols, [1, 0], blocks)
    touches = (targets[:, 0].abs() < 1).flatten(1).any(1)
    assert blocks.origins.remainder(4).eq(0).all() and blocks.origins.max() <= 24
    assert 0.65 < touches.float().mean() < 0.85  # the band share asked for, up to sampling noise
    all_band = sampler.sample([0], 50, band_fraction=1.0, crop_level=1, generator=g)
    assert (block_targets(vols, [0], all_band)[:, 0].abs() < 1).flatten(1).any(1).all()


def test_coarse_targets_average_the_tsdf():
    vols = sphere_volumes(16, [0.5])
    c = coarse_targets(vols, 4)
    assert c.shape == (1, 1, 4, 4, 4)
    assert torch.isclose(c[0, 0, 0, 0, 0], vols[0, 0, :4, :4, :4].mean())


def test_sparse_decode_keeps_the_surface_and_fills_the_far_field_by_sign(monkeypatch):
    torch.manual_seed(0)
    dec = Decoder(decoder_config(64, 4, feature_channels=4)).eval()
    coarse = sphere_volumes(16, [0.3])[:, :1]  # the coarse head sees a small sphere
    monkeypatch.setattr(dec, "coarse_prediction", lambda levels, p, conv: coarse)
    features = torch.randn(1, 4, 4, 4, 4)
    with torch.no_grad():
        dense = dec(features)
    active = active_blocks(coarse, dec.cfg, 16, margin=1, threshold=0.6)
    sparse = decode_sparse(dec, features, size=16, threshold=0.6)
    for i, j, k in active.nonzero().tolist():
        cut = (0, slice(None), slice(16 * i, 16 * i + 16), slice(16 * j, 16 * j + 16), slice(16 * k, 16 * k + 16))
        assert torch.allclose(sparse[cut], dense[cut], atol=1e-5)
    assert 0 < active.sum() < active.numel()
    far = ~active.repeat_interleave(16, 0).repeat_interleave(16, 1).repeat_interleave(16, 2)
    assert sparse[0, 0][far].eq(1).all() and sparse[0, 1:][:, far].eq(0).all()  # outside the sphere: +1
    assert decode_volume(dec, features, sparse=False).equal(dense)


def test_a_coarse_head_that_sees_no_surface_falls_back_to_the_dense_decode(monkeypatch):
    torch.manual_seed(1)
    dec = Decoder(decoder_config(64, 4, feature_channels=4)).eval()
    outside = torch.full((1, 1, 16, 16, 16), 0.9)  # a short training's coarse head: "outside everywhere"
    monkeypatch.setattr(dec, "coarse_prediction", lambda levels, p, conv: outside)
    features = torch.randn(1, 4, 4, 4, 4)
    with torch.no_grad():
        dense = dec(features)
    assert torch.allclose(decode_sparse(dec, features, size=16), dense, atol=1e-6)
