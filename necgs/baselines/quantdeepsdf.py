"""QuantDeepSDF (paper appendix C.2): an MLP auto-decoder over points, quantized.

An 8-layer MLP takes (x, F_i), the coordinates of a grid node and the latent vector of
shape i, and predicts the TSDF-Def value there. It is trained, like NeCGS, on the fitted
TSDF-Def volumes (points sampled from them, near-surface nodes favoured), with every
weight and latent quantized in the forward pass. Decoding evaluates the whole grid and
runs DMC. The width of the layers is the rate knob. The blob is a ``.ncgs`` container
holding the quantized weights and latents.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from necgs.baselines.base import Codec, ProgressFn, register_codec
from necgs.coding.archive import ArchiveReader, Section, archive_bytes
from necgs.coding.entropy import decode_symbols, encode_symbols
from necgs.config import FitConfig
from necgs.errors import CorruptArchiveError, StopCheck, stop_if_asked
from necgs.geometry.dmc import grid_coordinates, mesh_from_volume
from necgs.geometry.fit import fit_volumes
from necgs.io.mesh import Mesh, Transform
from necgs.model.quant import QuantSpec, from_symbols, quantize, symmetric_spec, to_symbols

LAYERS = 8


class SdfMlp(nn.Module):
    """(P, 3 + D) -> (P, 4): 8 linear layers, the input re-injected at layer 4 (DeepSDF)."""

    def __init__(self, latent: int, width: int) -> None:
        super().__init__()
        dims = [3 + latent] + [width] * (LAYERS - 1)
        self.layers = nn.ModuleList()
        for i in range(LAYERS - 1):
            extra = 3 + latent if i == LAYERS // 2 else 0
            self.layers.append(nn.Linear(dims[i] + extra, dims[i + 1]))
        self.out = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor, specs: dict[str, QuantSpec] | None = None) -> torch.Tensor:
        p = {n: (quantize(t, specs[n]) if specs else t) for n, t in self.named_parameters()}
        h = x
        for i in range(LAYERS - 1):
            if i == LAYERS // 2:
                h = torch.cat([h, x], dim=1)
            h = F.relu(F.linear(h, p[f"layers.{i}.weight"], p[f"layers.{i}.bias"]))
        return F.linear(h, p["out.weight"], p["out.bias"])


def _train(volumes: torch.Tensor, latent: int, width: int, steps: int, bits: int, seed: int, cancel: StopCheck | None):
    torch.manual_seed(seed)
    n, _, K = volumes.shape[:3]
    coords = grid_coordinates(K).reshape(-1, 3)
    targets = volumes.reshape(n, 4, -1).permute(0, 2, 1)  # (N, K^3, 4)
    near = [torch.nonzero(targets[i, :, 0].abs() < 1).squeeze(1) for i in range(n)]
    mlp = SdfMlp(latent, width)
    codes = nn.Parameter(torch.randn(n, latent) * 0.01)
    opt = torch.optim.Adam([{"params": mlp.parameters()}, {"params": [codes]}], lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        stop_if_asked(cancel)
        i = int(torch.randint(n, (1,), generator=gen))
        pick = torch.cat(
            [near[i][torch.randint(len(near[i]), (3072,), generator=gen)], torch.randint(K**3, (1024,), generator=gen)]
        )
        specs = {name: symmetric_spec(t, bits, True) for name, t in mlp.named_parameters()}
        z = quantize(codes[i], symmetric_spec(codes, bits, True)).expand(len(pick), -1)
        pred = mlp(torch.cat([coords[pick], z], 1), specs)
        loss = (pred - targets[i, pick]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return mlp, codes.detach()


@register_codec
class QuantDeepSdfCodec(Codec):
    """8-layer MLP auto-decoder on TSDF-Def samples, quantized; width is the knob."""

    name = "quantdeepsdf"
    label = "QuantDeepSDF"
    knob = "width"

    def sweep(self) -> list[dict]:
        return [{"width": w, "resolution": 32, "steps": 1500} for w in (96, 64, 32)]

    def encode(
        self,
        meshes: Sequence[Mesh],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[bytes]:
        K, width = int(setting.get("resolution", 32)), int(setting["width"])
        latent, bits = int(setting.get("latent", 32)), int(setting.get("bits", 8))
        fitted = fit_volumes(
            list(meshes), FitConfig(resolution=K, iterations=50, samples=10_000), progress=False, cancel=cancel
        )
        if progress:
            progress("train", 0.0)
        mlp, codes = _train(fitted.volumes.dense(), latent, width, int(setting.get("steps", 1500)), bits, 0, cancel)
        sections, specs = [], {}
        for name, t in [*mlp.named_parameters(), ("codes", codes)]:
            spec = symmetric_spec(t, bits, True)
            coder, blob = encode_symbols(to_symbols(t, spec))
            specs[name] = {"spec": spec.to_dict(), "shape": list(t.shape), "coder": coder}
            sections.append(Section(name, blob))
        meta = {
            "format": "quantdeepsdf",
            "resolution": K,
            "width": width,
            "latent": latent,
            "tensors": specs,
            "transforms": [t.to_dict() for t in fitted.transforms],
            "names": fitted.names,
        }
        return [archive_bytes(meta, sections)]

    def decode(
        self,
        blobs: Sequence[bytes],
        setting: dict,
        progress: ProgressFn | None = None,
        cancel: StopCheck | None = None,
    ) -> list[Mesh]:
        reader = ArchiveReader(blobs[0])
        meta = reader.metadata
        try:
            K, width, latent = int(meta["resolution"]), int(meta["width"]), int(meta["latent"])
            tensors = {}
            for name, d in meta["tensors"].items():
                shape = tuple(int(x) for x in d["shape"])
                sym = decode_symbols(reader.read_section(name), int(np.prod(shape)))
                tensors[name] = from_symbols(sym, QuantSpec.from_dict(d["spec"]), shape)
            mlp = SdfMlp(latent, width)
            codes = tensors.pop("codes")
            mlp.load_state_dict(tensors)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CorruptArchiveError(f"QuantDeepSDF stream is malformed ({exc})") from None
        coords = grid_coordinates(K).reshape(-1, 3)
        out = []
        with torch.no_grad():
            for i, (name, tdict) in enumerate(zip(meta["names"], meta["transforms"])):
                stop_if_asked(cancel)
                z = codes[i].expand(coords.shape[0], -1)
                values = torch.cat(
                    [
                        mlp(torch.cat([coords[j : j + 65536], z[j : j + 65536]], 1))
                        for j in range(0, coords.shape[0], 65536)
                    ]
                )
                volume = values.T.reshape(4, K, K, K)
                out.append(mesh_from_volume(volume, name).transformed(Transform.from_dict(tdict), inverse=True))
                if progress:
                    progress("decode", (i + 1) / len(meta["names"]))
        return out

    def setting_label(self, setting: dict) -> str:
        return f"width {setting['width']}"
