"""Quantization-aware auto-decoder training (paper Sec. 3.2, Eq. 2-3, 5).

Every shape i owns a learnable embedded feature F_i (C, K', K', K'); one decoder is shared
by all shapes. Each forward pass quantizes the features and every decoder parameter
(straight-through), so what is written to the archive, integer symbols, decodes to
exactly the volumes the loss saw. Adam with a linear warm-up then cosine decay.

Checkpoints (plain tensors + a JSON sidecar, loaded with ``weights_only=True``) are
written atomically every ``checkpoint_every`` epochs; calling again with the same folder
and settings resumes from the last one. Batch order depends only on (seed, epoch), so an
interrupted and resumed run ends where an uninterrupted one does.

:func:`train_shard` is the same training under ``torch.distributed`` (``necgs compress --nproc``
and ``--nnodes``): each rank holds only the volumes and features of its round-robin share of the
shapes (:mod:`necgs.training.sharding`), the decoder is wrapped in DistributedDataParallel
(gradients averaged, gloo on CPU, nccl on CUDA), and rank 0 gathers the features at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from necgs.coding.bit_estimate import rate_term
from necgs.config import TrainConfig
from necgs.device import resolve_device
from necgs.errors import ConfigError, stop_if_asked
from necgs.geometry.block_volume import Volumes
from necgs.model.blocks import best_crop_level
from necgs.model.decoder import Decoder, DecoderConfig
from necgs.model.encoder import VolumeEncoder
from necgs.model.quant import LearnedRange, QuantizedTensor, QuantSpec, quantize, symmetric_spec, to_symbols
from necgs.training import sharding
from necgs.training.checkpoints import load_checkpoint, run_digest, save_checkpoint, saved_epochs
from necgs.training.losses import LossWeights, surface_loss, volume_loss
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


class StepObjective:
    """The loss of one training step, dense or on blocks (shared by training and ``add``).

    Args:
        volumes: (N, 4, K, K, K) target volumes (CPU), dense or as blocks (the same steps either way).
        dcfg: The decoder architecture.
        tcfg: The training settings (mode, blocks, loss weights).
        deform: Whether decoding moves the surface by the deformation channels
            (:attr:`necgs.config.NecgsConfig.deform`); the surface term places the surface the
            same way, so with it off (the TSDF-only ablation) the predicted offsets do not count.
    """

    def __init__(self, volumes: Volumes, dcfg: DecoderConfig, tcfg: TrainConfig, deform: bool = True) -> None:
        self.volumes, self.tcfg, self.deform = volumes, tcfg, deform
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
        target = target.to(device)
        loss = volume_loss(pred, target, weights, generator)
        if self.tcfg.lambda_surface > 0:
            loss = loss + self.tcfg.lambda_surface * surface_loss(pred, target, self.deform)
        if coarse is not None:
            loss = loss + self.tcfg.coarse_weight * (coarse - self.coarse_targets[idx].to(device)).abs().mean()
        return loss


def train_autodecoder(
    volumes: Volumes,
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
    deform: bool = True,
) -> TrainedCodec:
    """Train features and decoder on the volumes with quantization-aware training, in this process.

    Args:
        volumes: (N, 4, K, K, K) float32 TSDF-Def volumes (CPU), all of the set: a tensor, or a
            :class:`necgs.geometry.block_volume.VolumeSet` (the band's blocks, e.g. mapped from the
            fitting cache), which trains the same steps to the bit without holding N x K^3 values.
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
            Not called under DDP (:func:`train_shard`).
        deform: Whether the archive decodes with the deformation channels (the surface term
            places the surface as decoding will; :class:`StepObjective`).

    Returns:
        The quantized :class:`TrainedCodec`.
    """
    _check_volumes(volumes, dcfg, tcfg)
    run = _Run(volumes, dcfg, tcfg, volumes.shape[0], 0, 1, autoencoder, encoder_input, init_decoder, deform)
    run.train(checkpoint_dir, progress, cancel, watch or current_watch())
    return run.codec(run.features.detach().cpu())


def train_shard(
    volumes: Volumes,
    dcfg: DecoderConfig,
    tcfg: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    progress: TrainProgress | bool = True,
    cancel: Callable[[], bool] | None = None,
    autoencoder: bool = False,
    deform: bool = True,
) -> TrainedCodec | None:
    """:func:`train_autodecoder` for one rank of a distributed run: this rank trains its own shapes.

    Every rank calls it at once. Each rank trains the features of its own shapes (the only
    ones whose volumes it holds); DDP averages the shared decoder's gradients (and the learned
    ranges' are all-reduced), so every rank steps the same decoder. A rank checkpoints its
    decoder, features and optimizer under its own name (:mod:`necgs.training.checkpoints`);
    a relaunch resumes from the latest epoch that every rank has. Outside ``torch.distributed``
    (or in a world of one) it is :func:`train_autodecoder`.

    Args:
        volumes: (n_r, 4, K, K, K) this rank's share of the set: the shapes i with
            i % world == rank, in order (:func:`necgs.training.sharding.shard_of`); dense or as blocks.
        dcfg, tcfg, checkpoint_dir, progress, cancel, autoencoder, deform: As in :func:`train_autodecoder`.

    Returns:
        The codec of the whole set (every rank's features gathered) on rank 0; None on the other ranks.
    """
    rank, world = sharding.current_rank()
    if world == 1:
        return train_autodecoder(
            volumes,
            dcfg,
            tcfg,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            cancel=cancel,
            autoencoder=autoencoder,
            deform=deform,
        )
    _check_volumes(volumes, dcfg, tcfg)
    n = sharding.total_count(volumes.shape[0])
    if volumes.shape[0] != len(sharding.shard_of(n, rank, world)) or volumes.shape[0] == 0:
        raise ConfigError(
            f"rank {rank} of {world} holds {volumes.shape[0]} volumes; its share of {n} shapes is "
            f"{len(sharding.shard_of(n, rank, world))} (every rank needs at least one)"
        )
    run = _Run(volumes, dcfg, tcfg, n, rank, world, autoencoder, deform=deform)
    run.train(checkpoint_dir, progress, cancel)
    full = sharding.gather_rows(run.features.detach(), n)
    return None if full is None else run.codec(full)


def _check_volumes(volumes: Volumes, dcfg: DecoderConfig, tcfg: TrainConfig) -> None:
    dcfg.validate()
    tcfg.validate()
    if len(volumes.shape) != 5 or volumes.shape[1] != 4 or volumes.shape[-1] != dcfg.resolution:
        raise ConfigError(f"volumes must be (N, 4, {dcfg.resolution}^3), got {tuple(volumes.shape)}")


class _Run:
    """One training of a decoder and the features of this process's shapes (all of them in one process).

    Args:
        volumes: (n_r, 4, K, K, K) the volumes of this process's shapes (dense or as blocks).
        dcfg, tcfg: Architecture and settings.
        n: The set's number of shapes.
        rank, world: This process's rank and the number of ranks (0, 1 in one process).
        autoencoder, encoder_input, init_decoder, deform: As in :func:`train_autodecoder`.
    """

    def __init__(
        self,
        volumes: Volumes,
        dcfg: DecoderConfig,
        tcfg: TrainConfig,
        n: int,
        rank: int,
        world: int,
        autoencoder: bool = False,
        encoder_input: int | None = None,
        init_decoder: dict[str, torch.Tensor] | None = None,
        deform: bool = True,
    ) -> None:
        self.volumes, self.dcfg, self.tcfg, self.n, self.rank, self.world = volumes, dcfg, tcfg, n, rank, world
        self.deform = deform
        self.device = resolve_device(tcfg.device)
        torch.manual_seed(tcfg.seed)
        self.decoder = Decoder(dcfg).to(self.device)
        if init_decoder is not None:
            self.decoder.load_state_dict(init_decoder)
        kp = dcfg.feature_resolution
        # the set's starting features, the same on every rank: each keeps its own shapes' rows
        start = torch.randn(
            (n, dcfg.feature_channels, kp, kp, kp), generator=torch.Generator().manual_seed(tcfg.seed)
        ).mul_(tcfg.feature_init_std)
        self.features = torch.nn.Parameter(start[sharding.shard_of(n, rank, world)].to(self.device))
        self.encoder = None
        if autoencoder:
            self.encoder = VolumeEncoder(dcfg.resolution, kp, dcfg.feature_channels, input_resolution=encoder_input)
            self.encoder = self.encoder.to(self.device)
        self.model = self.decoder if world == 1 else torch.nn.parallel.DistributedDataParallel(self.decoder)
        extra = list(self.encoder.parameters()) if self.encoder is not None else [self.features]
        self.ranges = None
        if tcfg.learn_ranges:
            self.ranges = _initial_ranges(self.decoder, start if self.encoder is None else None)
        groups = [{"params": self.decoder.parameters()}, {"params": extra}]
        if self.ranges is not None:
            groups.append({"params": list(self.ranges.values())})
        self.opt = torch.optim.Adam(groups, lr=tcfg.lr)
        encoder_key = {"input_resolution": encoder_input} if self.encoder is not None else None
        self.digest = run_digest(volumes, dcfg, tcfg, init_decoder, encoder_key, deform)
        self.tag, self.keep = (f".rank{rank}of{world}", 2) if world > 1 else ("", 1)
        self.losses: list[float] = []
        self.seconds = 0.0
        self.start_epoch = 0

    def resume(self, folder: Path | None) -> None:
        """Load the latest checkpoint of this run (under DDP: the latest epoch every rank has), if any."""
        epochs = saved_epochs(folder, self.tag, self.digest, self.keep)
        epoch = epochs[-1] if self.world == 1 and epochs else 0
        if self.world > 1:
            epoch = sharding.agreed_epoch(epochs)
        loaded = load_checkpoint(folder, self.tag, self.digest, epoch, self.keep) if folder and epoch else None
        if self.world > 1 and not sharding.all_ranks(epoch == 0 or loaded is not None):
            loaded = None  # a rank cannot read its part: every rank starts over together
        if loaded is None:
            return
        state, self.losses, self.seconds = loaded
        self.decoder.load_state_dict(state["decoder"])
        if self.encoder is not None:
            self.encoder.load_state_dict(state["encoder"])
        with torch.no_grad():
            self.features.copy_(state["features"])
            for name, r in (self.ranges or {}).items():
                r.copy_(state["ranges"][name])
        self.opt.load_state_dict(state["optim"])
        self.start_epoch = epoch

    def save(self, folder: Path, done: int, seconds: float) -> None:
        """Checkpoint after ``done`` epochs."""
        state = {
            "decoder": self.decoder.state_dict(),
            "features": self.features.detach().cpu(),
            "optim": self.opt.state_dict(),
        }
        if self.ranges is not None:
            state["ranges"] = {name: r.detach().cpu() for name, r in self.ranges.items()}
        if self.encoder is not None:
            state["encoder"] = self.encoder.state_dict()
        save_checkpoint(folder, self.tag, self.digest, done, state, self.losses, seconds, self.keep)

    def train(
        self,
        checkpoint_dir: Path | None,
        progress: TrainProgress | bool,
        cancel: Callable[[], bool] | None,
        watch: Watch | None = None,
    ):
        """Resume if a checkpoint matches, then train the remaining epochs (``watch``: after each one)."""
        tcfg, device, n, world = self.tcfg, self.device, self.n, self.world
        self.resume(checkpoint_dir)
        earlier, start_epoch = self.seconds, self.start_epoch
        m = self.volumes.shape[0]
        steps_per_epoch = max(math.ceil(math.ceil(n / world) / tcfg.batch_size), 1)
        total = steps_per_epoch * tcfg.epochs
        bar = _progress_bar(progress, tcfg.epochs, start_epoch, self.rank)
        objective = StepObjective(self.volumes, self.dcfg, tcfg, self.deform)
        t0 = time.perf_counter()
        for epoch in range(start_epoch, tcfg.epochs):
            order = torch.randperm(m, generator=torch.Generator().manual_seed(tcfg.seed * 100_003 + epoch))
            crops = torch.Generator().manual_seed(tcfg.seed * 100_019 + epoch * world + self.rank)
            epoch_loss = 0.0
            for s in range(steps_per_epoch):
                stop_if_asked(cancel)
                idx = [int(order[(s * tcfg.batch_size + j) % m]) for j in range(tcfg.batch_size)][:m]
                step = epoch * steps_per_epoch + s
                epoch_loss += self.step(objective, idx, crops, step, total)
            self.losses.append(epoch_loss / steps_per_epoch)
            done = epoch + 1
            eta = (time.perf_counter() - t0) / (done - start_epoch) * (tcfg.epochs - done)
            _report(bar, progress, done, tcfg.epochs, self.losses[-1], eta)
            if watch is not None:
                seconds = time.perf_counter() - t0
                watch(Snapshot("train", done, tcfg.epochs, self.losses[-1], seconds, n, self.decode_now))
            if (
                checkpoint_dir is not None
                and tcfg.checkpoint_every
                and (done % tcfg.checkpoint_every == 0 or done == tcfg.epochs)
            ):
                self.save(checkpoint_dir, done, earlier + time.perf_counter() - t0)
        if bar is not None:
            bar.close()
        if self.encoder is not None:
            with torch.no_grad():
                self.features = torch.nn.Parameter(
                    torch.cat([self.encoder(self.volumes[i : i + 4].to(device)) for i in range(0, m, 4)])
                )
        self.seconds = earlier + time.perf_counter() - t0

    def decode_now(self, i: int) -> torch.Tensor:
        """(4, K, K, K) decoded volume of this process's shape ``i`` with the quantized weights so far."""
        feature = (
            self.features[i : i + 1] if self.encoder is None else self.encoder(self.volumes[i : i + 1].to(self.device))
        )
        fspec = _feature_spec(self.features if self.encoder is None else feature, self.tcfg, self.ranges)
        return self.decoder(quantize(feature, fspec), _weight_specs(self.decoder, self.tcfg, self.ranges))[0]

    def step(self, objective: StepObjective, idx: list[int], crops: torch.Generator, step: int, total: int) -> float:
        """One optimizer step on this process's shapes ``idx`` (positions in its volumes); returns the loss."""
        tcfg, decoder, encoder, ranges = self.tcfg, self.decoder, self.encoder, self.ranges
        lr = lr_at(step, total, tcfg)
        self.opt.param_groups[0]["lr"] = lr
        self.opt.param_groups[1]["lr"] = lr * (tcfg.feature_lr_scale if encoder is None else 1.0)
        if ranges is not None:
            self.opt.param_groups[2]["lr"] = lr
        specs = _weight_specs(decoder, tcfg, ranges)
        batch_features = self.features[idx] if encoder is None else encoder(self.volumes[idx].to(self.device))
        scope = batch_features if encoder is not None else self.features
        if self.world > 1 and encoder is None and ranges is None and tcfg.per_tensor_ranges:
            scope = sharding.global_abs_max(scope)  # the grid of the set's features, not of this rank's
        fspec = _feature_spec(scope, tcfg, ranges)
        loss = objective(self.model, quantize(batch_features, fspec), specs, idx, crops, step / total)
        if tcfg.lambda_rate > 0:
            loss = loss + tcfg.lambda_rate * rate_term(
                dict(decoder.named_parameters()),
                specs,
                batch_features,
                fspec,
                n_shapes=self.n,
                resolution=self.dcfg.resolution,
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if ranges is not None and self.world > 1:
            _average_range_grads(ranges, self.world)
        _clip_and_step(self.opt, decoder, loss, self.world)
        return float(loss.detach())

    def codec(self, features: torch.Tensor) -> TrainedCodec:
        """The quantized codec of this decoder with ``features`` (N, C, K', K', K'), the set's, on the CPU."""
        codec = export_codec(self.decoder, features, self.tcfg, self.losses, self.seconds, self.ranges)
        codec.resumed_from = self.start_epoch
        if self.encoder is not None:
            codec.encoder = {name: t.detach().cpu() for name, t in self.encoder.state_dict().items()}
        return codec


#: Largest decoder gradient norm per step; larger ones are scaled down (keeps high lr stable).
MAX_GRAD_NORM = 1.0


def _clip_and_step(opt: torch.optim.Optimizer, decoder: Decoder, loss: torch.Tensor, world: int = 1) -> None:
    """Clip the decoder's gradient norm and step, skipping a step whose loss is not finite.

    Without this guard a high learning rate can diverge to NaN and leave every decoded surface
    empty (measurements: docs/ARCHITECTURE.md, 'Decisions and why', "Learning rate 5e-3 with
    gradient clipping"). Under DDP every rank skips when any rank's loss is not finite, so the
    ranks' decoders stay the same.
    """
    finite = bool(torch.isfinite(loss))
    if not (finite if world == 1 else sharding.all_ranks(finite)):
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
