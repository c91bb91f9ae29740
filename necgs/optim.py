"""Adam for the short optimizations of a single compression, without ``torch.optim``.

The first use of any ``torch.optim`` optimizer imports ``torch._dynamo`` (its methods are
wrapped in ``torch._disable_dynamo``), a large share of a single-mesh compression on a CPU
(measurements: benchmarks/README.md, "Fine-tuning a prior for one mesh or a few"). Fitting a
volume, fitting features and fine-tuning a prior run a few hundred steps each, so they use this
class instead; long trainings (:func:`necgs.training.train.train_autodecoder`, whose checkpoints
hold ``torch.optim.Adam`` state) keep torch's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class Adam:
    """Adam (Kingma and Ba) with torch's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.

    The update is ``torch.optim.Adam``'s, step for step (``tests/unit/test_adam.py`` checks both
    give the same parameters). Learning rates are set by the caller through ``param_groups``.

    Args:
        groups: Parameter groups, each a dict with ``"params"`` (tensors that require grad)
            and ``"lr"``.
        betas: Decay rates of the first and second moment estimates.
        eps: Added to the denominator.
    """

    def __init__(self, groups: Iterable[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.param_groups = [{"params": list(g["params"]), "lr": float(g["lr"])} for g in groups]
        self.betas, self.eps = betas, eps
        self._state: dict[int, tuple[int, torch.Tensor, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        """Drop every parameter's gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        beta1, beta2 = self.betas
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                step, m, v = self._state.get(id(p)) or (0, torch.zeros_like(p), torch.zeros_like(p))
                step += 1
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (v.sqrt() / math.sqrt(1 - beta2**step)).add_(self.eps)
                p.addcdiv_(m, denom, value=-group["lr"] / (1 - beta1**step))
                self._state[id(p)] = (step, m, v)
