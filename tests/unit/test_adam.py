"""necgs's Adam takes torch.optim.Adam's steps, without importing torch._dynamo."""

import subprocess
import sys

import torch

from necgs.optim import Adam


def _problem(seed: int):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(5, 3, generator=g).requires_grad_()
    b = torch.randn(7, generator=g).requires_grad_()
    unused = torch.randn(2, generator=g).requires_grad_()
    x = torch.randn(16, 5, generator=g)
    return a, b, unused, x


def _loss(a, b, x):
    return ((x @ a).tanh().sum(1) - b.sum()).pow(2).mean() + b.pow(2).sum()


def test_the_same_parameters_as_torch_adam_with_two_groups_and_changing_rates():
    ours, theirs = _problem(0), _problem(0)
    opt = Adam([{"params": [ours[0]], "lr": 1e-2}, {"params": [ours[1], ours[2]], "lr": 5e-2}])
    ref = torch.optim.Adam([{"params": [theirs[0]], "lr": 1e-2}, {"params": [theirs[1], theirs[2]], "lr": 5e-2}])
    for k in range(60):
        for o in (opt, ref):
            o.param_groups[1]["lr"] = 5e-2 * 0.5 * (1 + torch.cos(torch.tensor(k / 60 * torch.pi)).item())
        for params, o in ((ours, opt), (theirs, ref)):
            o.zero_grad()
            _loss(params[0], params[1], params[3]).backward()
            o.step()
    for mine, torchs in zip(ours[:3], theirs[:3]):
        assert torch.allclose(mine, torchs, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ours[0], _problem(0)[0])  # it moved
    assert torch.equal(ours[2], _problem(0)[2])  # no gradient, no step


def test_a_short_fit_does_not_import_torch_dynamo():
    code = (
        "import sys, torch\n"
        "from necgs.optim import Adam\n"
        "p = torch.zeros(3, requires_grad=True)\n"
        "opt = Adam([{'params': [p], 'lr': 0.1}])\n"
        "for _ in range(3):\n"
        "    opt.zero_grad(); (p - 1).pow(2).sum().backward(); opt.step()\n"
        "print('torch._dynamo' in sys.modules, float(p[0]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False" and 0.2 < float(out[1]) < 0.4
