"""Quantization-aware auto-decoder training (paper Sec. 3.2, Eq. 2-3, 5).

Every shape i owns a learnable embedded feature F_i (C, K', K', K'); one decoder is shared
by all shapes. Each forward pass quantizes the features and every decoder parameter
(straight-through), so what is written to the archive, integer symbols, decodes to
exactly the volumes the loss saw. Adam with a linear warm-up then cosine decay.

Checkpoints (plain tensors + a JSON sidecar, loaded with ``weights_only=True``) are
written atomically every ``checkpoint_every`` epochs; calling again with the same folder
and settings resumes from the last one. Batch order depends only on (seed, epoch), so an
interrupted and resumed run ends where an uninterrupted one does.

Under ``torchrun`` (``torch.distributed`` initialized) shapes are sharded round-robin
across ranks, the decoder is wrapped in DistributedDataParallel (gradients averaged, gloo
on CPU, nccl on CUDA) and the features are gathered on every rank at the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from necgs.coding.bit_estimate import rate_term
from necgs.config import TrainConfig
from necgs.device import resolve_device
from necgs.errors import ConfigError, stop_if_asked
from necgs.model.blocks import best_crop_level
from necgs.model.decoder import Decoder, DecoderConfig
from necgs.model.encoder import VolumeEncoder
from necgs.model.quant import LearnedRange, QuantizedTensor, QuantSpec, quantize, symmetric_spec, to_symbols
from necgs.training.losses import LossWeights, volume_loss
from necgs.training.patches import BlockSampler, block_targets, coarse_targets
from necgs.training.watch import Snapshot, Watch, current_watch

#: progress(epoch_done, epochs, mean_loss, eta_seconds)
TrainProgress = Callable[[int, int, float, float], None]


@dataclass
class TrainedCodec:
    """The compact representation: quantized decoder parameters and features.

    Attributes:
        decoder_cfg: Decoder architecture.
        weights: Quantized decoder parameters by name.
        features: Quantized features of all shapes; symbols (N * C * K'^3,), shape (N, C, K', K', K').
        losses: Mean loss of each epoch.
        seconds: Training time, including the runs a resumed run continues.
        resumed_from: Epoch the run resumed from (0: a fresh run).
        encoder: The float parameters of the volume encoder, when trained as an auto-encoder
            (archives never store it; a prior ships it to start new shapes' features).
    """

    decoder_cfg: DecoderConfig
    weights: dict[str, QuantizedTensor]
    features: QuantizedTensor
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0
    encoder: dict[str, torch.Tensor] | None = None

    def decoder(self, device: str | torch.device = "cpu") -> Decoder:
        """The decoder with its dequantized parameters (run it with ``specs=None``)."""
        return build_decoder(self.decoder_cfg, self.weights, device)

    def feature(self, i: int) -> torch.Tensor:
        """Dequantized feature of shape i: (C, K', K', K')."""
        return self.features.value()[i]


def build_decoder(cfg: DecoderConfig, weights: dict[str, QuantizedTensor], device="cpu") -> Decoder:
    """Decoder whose parameters are the dequantized ``weights`` (checked against the architecture)."""
    dec = Decoder(cfg)
    state = dec.state_dict()
    if set(state) != set(weights):
        raise ConfigError("decoder parameters in the archive do not match its architecture")
    for name, q in weights.items():
        if tuple(state[name].shape) != tuple(q.shape):
            raise ConfigError(f"decoder parameter {name} has shape {q.shape}, expected {tuple(state[name].shape)}")
        state[name] = q.value()
    dec.load_state_dict(state)
    return dec.to(device).eval()


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    warm = max(int(cfg.warmup_fraction * total), 1)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def _config_digest(
    volumes: torch.Tensor,
    dcfg: DecoderConfig,
    tcfg: TrainConfig,
    init: dict[str, torch.Tensor] | None = None,
    encoder: dict | None = None,
) -> str:
    h = hashlib.sha256()
    settings = asdict(tcfg)
    settings.pop("device")
    if encoder is not None:  # an auto-encoder's checkpoint is never resumed as an auto-decoder's
        settings["encoder"] = encoder
    h.update(json.dumps([dcfg.to_dict(), settings], sort_keys=True).encode())
    h.update(volumes.numpy().tobytes())
    for name in sorted(init or {}):
        h.update(name.encode() + init[name].detach().cpu().numpy().tobytes())
    return h.hexdigest()[:20]


def _save_checkpoint(
    folder: Path, tag: str, digest: str, epoch: int, state: dict, losses: list[float], seconds: float = 0.0
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".checkpoint{tag}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, folder / f"checkpoint{tag}.pt")
    meta = folder / f".checkpoint{tag}.{os.getpid()}.json.tmp"
    meta.write_text(json.dumps({"digest": digest, "epoch": epoch, "losses": losses, "seconds": round(seconds, 3)}))
    os.replace(meta, folder / f"checkpoint{tag}.json")


def _load_checkpoint(folder: Path | None, tag: str, digest: str) -> tuple[dict, int, list[float], float] | None:
    if (
        folder is None
        or not (folder / f"checkpoint{tag}.json").is_file()
        or not (folder / f"checkpoint{tag}.pt").is_file()
    ):
        return None
    try:
        meta = json.loads((folder / f"checkpoint{tag}.json").read_text())
        if meta.get("digest") != digest:
            return None
        state = torch.load(folder / f"checkpoint{tag}.pt", map_location="cpu", weights_only=True)
        return state, int(meta["epoch"]), [float(x) for x in meta["losses"]], float(meta.get("seconds", 0.0))
    except (OSError, ValueError, RuntimeError, KeyError):
        return None  # an unreadable checkpoint means starting over, never a crash


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class StepObjective:
    """The loss of one training step, dense or on blocks (shared by training and ``add``).

    Args:
        volumes: (N, 4, K, K, K) target volumes (CPU).
        dcfg: The decoder architecture.
        tcfg: The training settings (mode, blocks, loss weights).
    """

    def __init__(self, volumes: torch.Tensor, dcfg: DecoderConfig, tcfg: TrainConfig) -> None:
        self.volumes, self.tcfg = volumes, tcfg
        self.coarse = dcfg.coarse_head and tcfg.coarse_weight > 0
        self.coarse_targets = coarse_targets(volumes, dcfg.coarse_resolution) if self.coarse else None
        self.weights = LossWeights(
            tcfg.lambda1, tcfg.lambda2, tcfg.tau, tcfg.use_ssim, tcfg.ssim_crop, tcfg.deform_weight
        )
        self.sampler = None
        if tcfg.mode == "patch":
            size = min(tcfg.block_size, dcfg.resolution)
            self.crop_level = best_crop_level(
                dcfg, size, tcfg.batch_size, tcfg.batch_size * tcfg.blocks_per_shape, need_coarse=self.coarse
            )
            self.sampler = BlockSampler(volumes, size, 2 ** (dcfg.modules - self.crop_level), self.weights.tau)
            self.weights = replace(self.weights, ssim_crop=1.0)  # SSIM on each whole block (valid window)

    def __call__(
        self,
        model,
        features: torch.Tensor,
        specs: dict[str, QuantSpec] | None,
        idx: list[int],
        generator: torch.Generator,
        progress: float = 0.0,
    ) -> torch.Tensor:
        """Eq. 3 (+ the coarse head's L1) for the shapes ``idx`` decoded from ``features`` (B, C, K'^3).

        ``progress`` is the share of the training's steps done, which sets the SSIM weight
        when ``ssim_fade`` is on.
        """
        device = features.device
        if self.sampler is None:
            blocks, target = None, self.volumes[idx]
        else:
            blocks = self.sampler.sample(
                idx, self.tcfg.blocks_per_shape, self.tcfg.band_fraction, self.crop_level, generator
            )
            target = block_targets(self.volumes, idx, blocks)
        out = model(features, specs, blocks=blocks, with_coarse=self.coarse)
        pred, coarse = out if self.coarse else (out, None)
        weights = self.weights
        if self.tcfg.ssim_fade > 0:
            weights = replace(weights, lambda2=weights.lambda2 * max(0.0, 1.0 - progress / self.tcfg.ssim_fade))
        loss = volume_loss(pred, target.to(device), weights, generator)
        if coarse is not None:
            loss = loss + self.tcfg.coarse_weight * (coarse - self.coarse_targets[idx].to(device)).abs().mean()
        return loss


def train_autodecoder(
    volumes: torch.Tensor,
    dcfg: DecoderConfig,
    tcfg: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    progress: TrainProgress | bool = True,
    cancel: Callable[[], bool] | None = None,
    autoencoder: bool = False,
    encoder_input: int | None = None,
    init_decoder: dict[str, torch.Tensor] | None = None,
    watch: Watch | None = None,
) -> TrainedCodec:
    """Train features and decoder on the volumes with quantization-aware training.

    Args:
        volumes: (N, 4, K, K, K) float32 TSDF-Def volumes (CPU), all of the set.
        dcfg: Decoder architecture (its resolution must be K).
        tcfg: Training settings.
        checkpoint_dir: Where checkpoints go; an existing matching checkpoint is resumed.
        progress: ``True`` for a tqdm bar, a callback, or ``False``.
        cancel: Called before every step; True stops with :class:`necgs.errors.Cancelled`.
        autoencoder: Ablation (paper C.3): features come from a ConvNeXt-style encoder of
            the volumes instead of being free parameters; only its outputs are stored.
        encoder_input: With ``autoencoder``: the encoder average-pools the volumes to this
            side first (None: the full K^3, the ablation's encoder).
        init_decoder: Decoder parameters to start from instead of a random initialization
            (fine-tuning a prior); they are part of the checkpoint's identity.
        watch: Called after every epoch with a :class:`necgs.training.watch.Snapshot` (a live
            display); None: the one installed by :func:`necgs.training.watch.watching`, if any.
            Not called under DDP.

    Returns:
        The quantized :class:`TrainedCodec`.
    """
    dcfg.validate()
    tcfg.validate()
    if volumes.dim() != 5 or volumes.shape[1] != 4 or volumes.shape[-1] != dcfg.resolution:
        raise ConfigError(f"volumes must be (N, 4, {dcfg.resolution}^3), got {tuple(volumes.shape)}")
    device = resolve_device(tcfg.device)
    rank, world = _distributed()
    n = volumes.shape[0]
    torch.manual_seed(tcfg.seed)
    decoder = Decoder(dcfg).to(device)
    if init_decoder is not None:
        decoder.load_state_dict(init_decoder)
    kp = dcfg.feature_resolution
    features = torch.nn.Parameter(
        torch.randn((n, dcfg.feature_channels, kp, kp, kp), generator=torch.Generator().manual_seed(tcfg.seed))
        .mul_(tcfg.feature_init_std)
        .to(device)
    )
    encoder = None
    if autoencoder:
        encoder = VolumeEncoder(dcfg.resolution, kp, dcfg.feature_channels, input_resolution=encoder_input).to(device)
    model = decoder
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(decoder)
    extra = list(encoder.parameters()) if encoder is not None else [features]
    ranges = _initial_ranges(decoder, features if encoder is None else None) if tcfg.learn_ranges else None
    groups = [{"params": decoder.parameters()}, {"params": extra}]
    if ranges is not None:
        groups.append({"params": list(ranges.values())})
    opt = torch.optim.Adam(groups, lr=tcfg.lr)
    encoder_key = {"input_resolution": encoder_input} if encoder is not None else None
    digest = _config_digest(volumes, dcfg, tcfg, init_decoder, encoder_key)
    tag = f".rank{rank}of{world}" if world > 1 else ""
    start_epoch, losses, earlier = 0, [], 0.0
    resumed = _load_checkpoint(checkpoint_dir, tag, digest)
    if resumed is not None:
        state, start_epoch, losses, earlier = resumed
        decoder.load_state_dict(state["decoder"])
        if encoder is not None:
            encoder.load_state_dict(state["encoder"])
        with torch.no_grad():
            features.copy_(state["features"])
            for name, r in (ranges or {}).items():
                r.copy_(state["ranges"][name])
        opt.load_state_dict(state["optim"])
    mine = [i for i in range(n) if i % world == rank]
    steps_per_epoch = max(math.ceil(math.ceil(n / world) / tcfg.batch_size), 1)
    total = steps_per_epoch * tcfg.epochs
    bar = _progress_bar(progress, tcfg.epochs, start_epoch, rank)
    objective = StepObjective(volumes, dcfg, tcfg)
    watch = (watch or current_watch()) if world == 1 else None

    def decode_now(i: int) -> torch.Tensor:
        feature = features[i : i + 1] if encoder is None else encoder(volumes[i : i + 1].to(device))
        fspec = _feature_spec(features if encoder is None else feature, tcfg, ranges)
        return decoder(quantize(feature, fspec), _weight_specs(decoder, tcfg, ranges))[0]

    t0 = time.perf_counter()
    for epoch in range(start_epoch, tcfg.epochs):
        order = torch.randperm(len(mine), generator=torch.Generator().manual_seed(tcfg.seed * 100_003 + epoch))
        crops = torch.Generator().manual_seed(tcfg.seed * 100_019 + epoch * world + rank)
        epoch_loss = 0.0
        for s in range(steps_per_epoch):
            stop_if_asked(cancel)
            idx = [mine[int(order[(s * tcfg.batch_size + j) % len(mine)])] for j in range(tcfg.batch_size)][: len(mine)]
            step = epoch * steps_per_epoch + s
            lr = lr_at(step, total, tcfg)
            opt.param_groups[0]["lr"] = lr
            opt.param_groups[1]["lr"] = lr * (tcfg.feature_lr_scale if encoder is None else 1.0)
            if ranges is not None:
                opt.param_groups[2]["lr"] = lr
            specs = _weight_specs(decoder, tcfg, ranges)
            batch_features = features[idx] if encoder is None else encoder(volumes[idx].to(device))
            fspec = _feature_spec(batch_features if encoder is not None else features, tcfg, ranges)
            loss = objective(model, quantize(batch_features, fspec), specs, idx, crops, step / total)
            if tcfg.lambda_rate > 0:
                loss = loss + tcfg.lambda_rate * rate_term(
                    dict(decoder.named_parameters()),
                    specs,
                    batch_features,
                    fspec,
                    n_shapes=n,
                    resolution=dcfg.resolution,
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if ranges is not None and world > 1:
                _average_range_grads(ranges, world)
            _clip_and_step(opt, decoder, loss)
            epoch_loss += float(loss.detach())
        losses.append(epoch_loss / steps_per_epoch)
        done = epoch + 1
        _report(
            bar,
            progress,
            done,
            tcfg.epochs,
            losses[-1],
            (time.perf_counter() - t0) / (done - start_epoch) * (tcfg.epochs - done),
        )
        if watch is not None:
            watch(Snapshot("train", done, tcfg.epochs, losses[-1], time.perf_counter() - t0, n, decode_now))
        if (
            checkpoint_dir is not None
            and tcfg.checkpoint_every
            and (done % tcfg.checkpoint_every == 0 or done == tcfg.epochs)
        ):
            state = {"decoder": decoder.state_dict(), "features": features.detach().cpu(), "optim": opt.state_dict()}
            if ranges is not None:
                state["ranges"] = {name: r.detach().cpu() for name, r in ranges.items()}
            if encoder is not None:
                state["encoder"] = encoder.state_dict()
            _save_checkpoint(checkpoint_dir, tag, digest, done, state, losses, earlier + time.perf_counter() - t0)
    if bar is not None:
        bar.close()
    if encoder is not None:
        with torch.no_grad():
            features = torch.nn.Parameter(torch.cat([encoder(volumes[i : i + 4].to(device)) for i in range(0, n, 4)]))
    final = _gather_features(features.detach(), mine, world)
    codec = export_codec(decoder, final, tcfg, losses, earlier + time.perf_counter() - t0, ranges)
    codec.resumed_from = start_epoch
    if encoder is not None:
        codec.encoder = {name: t.detach().cpu() for name, t in encoder.state_dict().items()}
    return codec


#: Largest decoder gradient norm per step; larger ones are scaled down (keeps high lr stable).
MAX_GRAD_NORM = 1.0


def _clip_and_step(opt: torch.optim.Optimizer, decoder: Decoder, loss: torch.Tensor) -> None:
    """Clip the decoder's gradient norm and step, skipping a step whose loss is not finite.

    Without this guard a high learning rate can diverge to NaN and leave every decoded surface
    empty (measurements: docs/ARCHITECTURE.md, 'Decisions and why', "Learning rate 5e-3 with
    gradient clipping").
    """
    if not torch.isfinite(loss):
        opt.zero_grad(set_to_none=True)
        return
    torch.nn.utils.clip_grad_norm_(decoder.parameters(), MAX_GRAD_NORM)
    opt.step()


def _average_range_grads(ranges: dict[str, torch.Tensor], world: int) -> None:
    """Under DDP: the learned ranges get the mean gradient of all ranks, like the decoder (same grids)."""
    for r in ranges.values():
        if r.grad is None:
            r.grad = torch.zeros_like(r)
        dist.all_reduce(r.grad)
        r.grad /= world


def _gather_features(features: torch.Tensor, mine: list[int], world: int) -> torch.Tensor:
    if world == 1:
        return features.cpu()
    owned = torch.zeros_like(features)
    owned[mine] = features[mine]
    dist.all_reduce(owned, op=dist.ReduceOp.SUM)
    return owned.cpu()


#: Key of the features' learned range among the decoder's parameter names.
FEATURE_RANGE = "features"


def _initial_ranges(decoder: Decoder, features: torch.Tensor | None) -> dict[str, torch.nn.Parameter]:
    """Learned log half-ranges log r, one per decoder tensor and one for the features, started at max|x|.

    In log space, so that Adam's steps (about lr each, whatever the gradient's scale) change
    every range by the same relative amount, small tensors' ranges too.
    """
    ranges = {
        name: torch.nn.Parameter(t.detach().abs().max().clamp(min=1e-4).log()) for name, t in decoder.named_parameters()
    }
    start = features.detach().abs().max().clamp(min=1e-4) if features is not None else torch.tensor(1.0)
    ranges[FEATURE_RANGE] = torch.nn.Parameter(start.log().to(next(decoder.parameters()).device))
    return ranges


def _learned(bits: int, log_r: torch.Tensor) -> LearnedRange:
    return LearnedRange(bits, log_r.exp())


def _weight_specs(decoder: Decoder, tcfg: TrainConfig, ranges: dict[str, torch.Tensor] | None) -> dict:
    """Every decoder tensor's grid this step: max-abs, or its learned range."""
    if ranges is None:
        return decoder.quant_specs(tcfg.weight_bits, tcfg.per_tensor_ranges)
    return {name: _learned(tcfg.weight_bits, ranges[name]) for name, _ in decoder.named_parameters()}


def _feature_spec(features: torch.Tensor, tcfg: TrainConfig, ranges: dict[str, torch.Tensor] | None):
    """The features' grid this step: max-abs of ``features``, or the learned range."""
    if ranges is None:
        return symmetric_spec(features, tcfg.feature_bits, tcfg.per_tensor_ranges)
    return _learned(tcfg.feature_bits, ranges[FEATURE_RANGE])


def _stored(spec: QuantSpec | LearnedRange) -> QuantSpec:
    """The grid the archive stores: a learned range frozen at its current r."""
    return spec.frozen() if isinstance(spec, LearnedRange) else spec


def export_codec(
    decoder: Decoder,
    features: torch.Tensor,
    tcfg: TrainConfig,
    losses: list[float],
    seconds: float,
    ranges: dict[str, torch.Tensor] | None = None,
) -> TrainedCodec:
    """Quantize the trained decoder and features into a :class:`TrainedCodec` (on learned ranges if given)."""
    specs = _weight_specs(decoder, tcfg, ranges)
    weights = {}
    for name, t in decoder.named_parameters():
        spec = _stored(specs[name])
        weights[name] = QuantizedTensor(to_symbols(t, spec), spec, tuple(t.shape))
    fspec = _stored(_feature_spec(features, tcfg, ranges))
    fq = QuantizedTensor(to_symbols(features, fspec), fspec, tuple(features.shape))
    return TrainedCodec(decoder.cfg, weights, fq, list(losses), seconds)


def _progress_bar(progress, epochs: int, start: int, rank: int):
    if progress is True and rank == 0:
        return tqdm(total=epochs, initial=start, desc="train", unit="epoch")
    return None


def _report(bar, progress, done: int, epochs: int, loss: float, eta: float) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
    elif callable(progress):
        progress(done, epochs, loss, eta)
