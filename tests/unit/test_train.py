"""The auto-decoder training on analytic volumes: patch and dense modes, the auto-encoder
ablation and feature-only fitting all learn, and bad settings are refused."""

import pytest
import torch

from necgs.config import TrainConfig
from necgs.errors import ConfigError
from necgs.model.decoder import Decoder, decoder_config
from necgs.training.features import fit_features
from necgs.training.train import StepObjective, train_autodecoder


def spheres(K: int, radii) -> torch.Tensor:
    g = torch.linspace(-1, 1, K)
    x, y, z = torch.meshgrid(g, g, g, indexing="ij")
    r = torch.sqrt(x**2 + y**2 + z**2)
    h = 2 / (K - 1)
    return torch.stack([torch.cat([((r - a) / (2 * h)).clamp(-1, 1)[None], torch.zeros(3, K, K, K)]) for a in radii])


def sign_accuracy(codec, volumes) -> float:
    with torch.no_grad():
        pred = codec.decoder()(codec.features.value())
    return float(((pred[:, 0] > 0) == (volumes[:, 0] > 0)).float().mean())


@pytest.mark.parametrize("mode, surface", [("patch", 0.0), ("dense", 0.0), ("patch", 1.0)])
def test_both_modes_learn_the_spheres(mode, surface):
    vols = spheres(16, [0.4, 0.55, 0.7])
    tcfg = TrainConfig(
        epochs=60,
        lr=1e-2,
        batch_size=3,
        checkpoint_every=0,
        device="cpu",
        mode=mode,
        block_size=8,
        blocks_per_shape=4,
        lambda_surface=surface,
    )
    codec = train_autodecoder(vols, decoder_config(16, 6, feature_channels=4), tcfg, progress=False)
    assert codec.losses[-1] < 0.5 * codec.losses[0]
    assert sign_accuracy(codec, vols) > 0.97
    assert {"coarse.weight", "coarse.bias"} <= set(codec.weights)  # the coarse head is trained and stored


def test_autoencoder_ablation_trains_on_blocks():
    vols = spheres(16, [0.4, 0.6])
    tcfg = TrainConfig(epochs=40, lr=1e-2, batch_size=2, checkpoint_every=0, device="cpu", block_size=8)
    codec = train_autodecoder(vols, decoder_config(16, 6, feature_channels=4), tcfg, progress=False, autoencoder=True)
    assert codec.features.shape == (2, 4, 4, 4, 4) and codec.losses[-1] < codec.losses[0]


def test_feature_fitting_against_a_frozen_decoder_improves_the_new_shape():
    vols = spheres(16, [0.4, 0.55, 0.7])
    tcfg = TrainConfig(epochs=60, lr=1e-2, batch_size=3, checkpoint_every=0, device="cpu", block_size=8)
    codec = train_autodecoder(vols, decoder_config(16, 6, feature_channels=4), tcfg, progress=False)
    new = spheres(16, [0.62])
    before = codec.features.value().mean(0, keepdim=True)  # where fitting starts
    fitted = fit_features(codec, new, TrainConfig(epochs=30, lr=1e-3, device="cpu", block_size=8))
    decoder = codec.decoder()
    with torch.no_grad():
        err_before = (decoder(before)[:, 0] - new[:, 0]).abs().mean()
        err_after = (decoder(fitted.value())[:, 0] - new[:, 0]).abs().mean()
    assert err_after < 0.85 * err_before


@pytest.mark.parametrize(
    "field, value",
    [
        ("mode", "sparse"),
        ("block_size", 12),
        ("block_size", 4),
        ("band_fraction", 1.5),
        ("blocks_per_shape", 0),
        ("ssim_fade", 1.5),
        ("deform_weight", -1.0),
    ],
)
def test_bad_patch_settings_are_refused(field, value):
    with pytest.raises(ConfigError):
        TrainConfig(**{field: value}).validate()


def test_a_shape_left_without_surface_gets_its_feature_refitted():
    """Shape 1's feature is moved to where the decoder says "outside" everywhere; the repair
    restarts it from the nearest shape that decodes and fits it back; shape 0 is untouched."""
    from dataclasses import replace

    from necgs.model.quant import QuantizedTensor
    from necgs.training.features import repair_empty_shapes, shapes_without_surface_in

    vols = spheres(16, [0.4, 0.55, 0.7])
    tcfg = TrainConfig(epochs=60, lr=1e-2, batch_size=3, checkpoint_every=0, device="cpu", block_size=8)
    codec = train_autodecoder(vols, decoder_config(16, 6, feature_channels=4), tcfg, progress=False)
    assert shapes_without_surface_in(codec) == []
    per = codec.features.symbols.size // 3
    broken = None
    for level in range(codec.features.spec.levels):  # a constant feature that decodes to no surface
        symbols = codec.features.symbols.copy()
        symbols[per : 2 * per] = level
        trial = replace(codec, features=QuantizedTensor(symbols, codec.features.spec, codec.features.shape))
        if 1 in shapes_without_surface_in(trial):
            broken = trial
            break
    if broken is None:
        pytest.fail("no constant feature decodes to an empty volume; the test needs another way to break shape 1")
    repaired, which = repair_empty_shapes(broken, vols, tcfg, visits=60)
    assert which == [1]
    assert shapes_without_surface_in(repaired) == []
    assert (repaired.features.symbols[:per] == codec.features.symbols[:per]).all()


def test_learned_ranges_train_and_are_what_the_codec_stores():
    """Training with learned ranges learns, and the stored symbols decode to levels on the stored grid."""
    from necgs.model.quant import from_symbols

    vols = spheres(16, [0.4, 0.55, 0.7])
    tcfg = TrainConfig(
        epochs=60, lr=1e-2, batch_size=3, checkpoint_every=0, device="cpu", weight_bits=4, learn_ranges=True
    )
    codec = train_autodecoder(vols, decoder_config(16, 6, feature_channels=4), tcfg, progress=False)
    assert sign_accuracy(codec, vols) > 0.95
    for q in codec.weights.values():
        values = q.value()
        assert q.spec.bits == 4 and q.spec.lo == -q.spec.hi
        assert torch.equal(values, from_symbols(q.symbols, q.spec, q.shape))
        assert values.abs().max() <= q.spec.hi + 1e-6


def test_learned_ranges_need_per_tensor_ranges():
    with pytest.raises(ConfigError):
        TrainConfig(learn_ranges=True, per_tensor_ranges=False).validate()


@pytest.mark.parametrize("mode", ["patch", "dense"])
def test_ssim_fade_lowers_the_ssim_weight_to_zero_over_its_share_of_the_steps(mode):
    vols = spheres(16, [0.4, 0.6])
    dcfg = decoder_config(16, 4, feature_channels=4)
    torch.manual_seed(0)
    model, features = Decoder(dcfg), torch.randn(2, 4, 4, 4, 4)
    base = dict(mode=mode, block_size=8, blocks_per_shape=2, batch_size=2, ssim_crop=1.0)

    def loss(progress: float, **cfg) -> float:
        objective = StepObjective(vols, dcfg, TrainConfig(**base, **cfg))
        with torch.no_grad():
            return float(objective(model, features, None, [0, 1], torch.Generator().manual_seed(1), progress))

    assert loss(0.0, ssim_fade=0.5) == pytest.approx(loss(0.0))  # full weight at the start
    assert loss(0.5, ssim_fade=0.5) == pytest.approx(loss(0.5, use_ssim=False))  # gone at its share
    assert loss(0.9, ssim_fade=0.5) == pytest.approx(loss(0.9, use_ssim=False))
    quarter = loss(0.25, ssim_fade=0.5)  # half-way through the fade: the mean of both
    assert quarter == pytest.approx((loss(0.25) + loss(0.25, use_ssim=False)) / 2)
    assert loss(0.0) > loss(0.0, use_ssim=False)


def test_the_surface_term_places_the_surface_as_decoding_will():
    """With deformation off (the TSDF-only ablation) the archive decodes without offsets, so the
    surface term must not count the offsets the decoder predicts; with it on, it must."""
    from necgs.training.losses import surface_loss

    vols = spheres(16, [0.4, 0.6])
    dcfg = decoder_config(16, 4, feature_channels=4)
    tcfg = TrainConfig(  # Eq. 3 on the TSDF alone (deform_weight 0): only the surface term sees the offsets
        mode="dense", lambda1=0.0, use_ssim=False, deform_weight=0.0, lambda_surface=1.0, coarse_weight=0
    )
    offsets = torch.zeros_like(vols)
    offsets[:, 1:] = 0.4  # predicted deformation the targets do not have

    def decoded(features, specs, blocks=None, with_coarse=False):
        return vols + offsets  # a stand-in decoder: the targets with offsets

    def loss(deform: bool) -> float:
        objective = StepObjective(vols, dcfg, tcfg, deform=deform)
        return float(objective(decoded, torch.zeros(2, 4, 4, 4, 4), None, [0, 1], torch.Generator()))

    assert loss(False) == pytest.approx(0.0, abs=1e-6)  # the TSDF is exact: no surface error
    assert loss(True) == pytest.approx(float(surface_loss(vols + offsets, vols, deform=True)))
    assert loss(True) > 0.1  # the offsets move the decoded surface


def test_the_repair_keeps_the_start_that_decodes_to_a_surface_with_the_lowest_band_error():
    from necgs.training.features import best_starts

    target = spheres(8, [0.5])[:, :1]  # (1, 1, 8, 8, 8): a surface
    outside = torch.ones_like(target)
    fits = torch.cat([outside, target + 0.3, target + 0.05, outside, outside * 2, outside * 0.9])
    targets = target.expand(6, -1, -1, -1, -1)
    identity = lambda f: f  # noqa: E731  (the "decoder" returns the feature as the volume)
    assert best_starts(identity, fits, targets, 3) == [2, 5]  # shape 2: none has a surface, lowest error


@pytest.mark.parametrize("shift, empty", [(-0.05, []), (1.0, [0, 1])])
def test_the_surface_check_at_k128_decodes_sparse_and_answers_as_the_dense_decode(monkeypatch, shift, empty):
    """At K = 128 the check decodes block-sparse, as the archive does; a coarse head that sees no
    surface sends it to the dense decode, so a shape with a surface is never reported empty."""
    from necgs.model.quant import QuantizedTensor, QuantSpec, to_symbols
    from necgs.training.features import shapes_without_surface_in
    from necgs.training.train import TrainedCodec

    torch.manual_seed(0)
    dcfg = decoder_config(128, 4, feature_channels=4)
    model = Decoder(dcfg)
    with torch.no_grad():
        model.tail.bias[0] += shift  # an untrained decoder's TSDF sits in [0.02, 0.08]: -0.05 puts 0 inside
    spec = QuantSpec(10, -2, 2)
    weights = {
        n: QuantizedTensor(to_symbols(p.detach(), spec), spec, tuple(p.shape)) for n, p in model.named_parameters()
    }
    kp = dcfg.feature_resolution
    fshape = (2, 4, kp, kp, kp)
    features = QuantizedTensor(to_symbols(torch.randn(fshape), QuantSpec(6, -1, 1)), QuantSpec(6, -1, 1), fshape)
    codec = TrainedCodec(dcfg, weights, features)
    outside = torch.full((1, 1, *3 * [dcfg.coarse_resolution]), 0.9)
    monkeypatch.setattr(Decoder, "coarse_prediction", lambda self, levels, p, conv: outside)  # finds no block
    assert shapes_without_surface_in(codec) == empty
