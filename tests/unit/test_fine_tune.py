"""The decoder delta of prior fine-tuning: starts at the prior, round-trips through its symbols."""

import torch

from necgs.model.decoder import Decoder, decoder_config
from necgs.model.quant import symmetric_spec, to_symbols
from necgs.training.fine_tune import DeltaDecoder, apply_delta, delta_specs
from necgs.training.train import QuantizedTensor, build_decoder


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
    from necgs.baselines.necgs_codec import NecgsCodec, prior_fit_from_setting

    assert prior_fit_from_setting({"prior": "bodies"}) is None
    assert prior_fit_from_setting({"prior": "bodies", "fine_tune": 200}).delta_multiple == 4
    coarse = {"prior": "bodies", "fine_tune": 200, "delta_multiple": 16}
    assert prior_fit_from_setting(coarse).delta_multiple == 16
    assert NecgsCodec().setting_label(coarse) == "prior bodies + fine-tune 200 (delta step x16)"
