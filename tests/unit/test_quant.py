"""The quantizer: a learned range computes the levels the archive stores, and its gradient
moves it the way LSQ says (down when nothing clips and rounding dominates, up when values clip)."""

import torch

from necgs.model.quant import LearnedRange, from_symbols, quantize, to_symbols


def test_learned_range_levels_are_the_stored_levels():
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    r = torch.tensor(1.7)
    learned = quantize(x, LearnedRange(5, r))
    spec = LearnedRange(5, r).frozen()
    assert torch.equal(learned, from_symbols(to_symbols(x, spec), spec, x.shape))
    assert torch.equal(learned, quantize(x, spec))


def test_learned_range_grows_when_values_clip_and_shrinks_when_they_do_not():
    x = torch.randn(4096, generator=torch.Generator().manual_seed(1))
    for start, direction in ((0.5, -1.0), (8.0, 1.0)):  # d(loss)/dr < 0 means gradient descent raises r
        r = torch.tensor(start, requires_grad=True)
        ((quantize(x, LearnedRange(3, r)) - x) ** 2).mean().backward()
        assert float(r.grad) * direction > 0, (start, float(r.grad))
