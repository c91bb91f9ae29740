"""The decoder delta of prior fine-tuning: starts at the prior, round-trips through its symbols."""

import torch

from necgs.model.decoder import Decoder, decoder_config
from necgs.model.quant import QuantizedTensor, symmetric_spec, to_symbols
from necgs.training.fine_tune import DeltaDecoder, apply_delta, delta_specs
from necgs.training.train import build_decoder


def quantized_decoder(seed=0):
    torch.manual_seed(seed)
    dec = Decoder(decoder_config(16, 4, feature_channels=4))
    return {
        n: QuantizedTensor(to_symbols(t.detach(), s), s, tuple(t.shape))
        for n, t in dec.named_parameters()
        for s in [symmetric_spec(t.detach(), 8, True)]
    }


def test_the_delta_grid_is_a_multiple_of_the_prior_step_centred_on_zero():
    weights = quantized_decoder()
    specs = delta_specs(weights, multiple=4, bits=6)
    for n, q in weights.items():
        assert abs(specs[n].step - 4 * q.spec.step) < 1e-12 and specs[n].lo == -specs[n].hi


def test_a_delta_decoder_starts_at_the_prior_and_its_symbols_rebuild_what_it_computes():
    weights = quantized_decoder()
    base = {n: q.value() for n, q in weights.items()}
    dd = DeltaDecoder(decoder_config(16, 4, feature_channels=4), base, delta_specs(weights, 2, 6))
    start = dd.effective_params()
    assert all(torch.allclose(start[n], base[n], atol=1e-7) for n in base)
    with torch.no_grad():
        for t in dd.parameters():
            t.add_(0.05 * torch.randn_like(t))
    moved = dd.effective_params()
    rebuilt = apply_delta(build_decoder(dd.cfg, weights), dd.delta())
    for n, t in rebuilt.named_parameters():
        assert torch.allclose(t, moved[n], atol=1e-6)
    assert any(not torch.allclose(moved[n], base[n]) for n in base)
    features = torch.randn(1, 4, 4, 4, 4)
    with torch.no_grad():
        assert torch.allclose(rebuilt(features), dd(features), atol=1e-5)


def test_a_benchmark_setting_names_the_delta_step_it_fine_tunes_with():
    from necgs.baselines.necgs_codec import NecgsCodec
    from necgs.config import PriorFitConfig
    from necgs.settings import read_setting

    def prior_fit_from_setting(setting):
        return read_setting(setting).prior_fit

    assert prior_fit_from_setting({"prior": "bodies"}) == PriorFitConfig()  # features only
    assert prior_fit_from_setting({"prior": "bodies", "fine_tune": 200}).delta_multiple == 4
    coarse = {"prior": "bodies", "fine_tune": 200, "delta_multiple": 16}
    assert prior_fit_from_setting(coarse).delta_multiple == 16
    assert NecgsCodec().setting_label(coarse) == "prior bodies + fine-tune 200 (delta step x16)"
    rated = {**coarse, "lambda_rate": 16.0}
    assert prior_fit_from_setting(rated).fine_tune_lambda_rate == 16.0
    assert prior_fit_from_setting(coarse).fine_tune_lambda_rate == PriorFitConfig.fine_tune_lambda_rate > 0
    plain = {**coarse, "lambda_rate": 0.0}
    assert prior_fit_from_setting(plain).fine_tune_lambda_rate == 0.0
    assert NecgsCodec().setting_label(plain) == "prior bodies + fine-tune 200 (delta step x16, lambda_R 0)"
    assert NecgsCodec().setting_label(rated) == "prior bodies + fine-tune 200 (delta step x16, lambda_R 16)"


def test_the_rate_term_makes_the_fine_tuned_delta_smaller():
    """lambda_R pulls the delta's symbols to zero: fewer estimated bits and fewer moved weights."""
    from necgs.coding.bit_estimate import decoder_bits
    from necgs.config import TrainConfig
    from necgs.model.quant import QuantSpec
    from necgs.training.fine_tune import fine_tune_decoder
    from necgs.training.train import TrainedCodec

    K = 16
    g = torch.linspace(-1, 1, K)
    r = torch.sqrt(sum(c**2 for c in torch.meshgrid(g, g, g, indexing="ij")))
    tsdf = torch.stack([((r - rad) / 0.3).clamp(-1, 1) for rad in (0.4, 0.6)])
    volumes = torch.cat([tsdf[:, None], torch.zeros(2, 3, K, K, K)], dim=1)  # (2, 4, K, K, K)
    weights = quantized_decoder()
    spec = QuantSpec(6, -1.0, 1.0)
    start = torch.zeros(2, 4, 4, 4, 4)
    codec = TrainedCodec(
        decoder_config(K, 4, feature_channels=4),
        weights,
        QuantizedTensor(to_symbols(start, spec), spec, tuple(start.shape)),
    )
    tcfg = TrainConfig(lr=1e-2, batch_size=2, mode="dense", device="cpu").validate()
    specs = delta_specs(weights, 4, 6)
    bits, moved = [], []
    for lam in (0.0, 50.0):
        delta, _ = fine_tune_decoder(codec, volumes, codec.features, tcfg, 40, 2e-2, 4, 6, cosine=True, lambda_rate=lam)
        values = {n: q.value() for n, q in delta.items()}
        bits.append(float(decoder_bits(values, specs)))
        moved.append(sum(int((v != 0).sum()) for v in values.values()))
    assert bits[1] < 0.7 * bits[0] and moved[1] < moved[0], (bits, moved)
