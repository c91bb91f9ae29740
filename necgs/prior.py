"""Pretrained decoders ("priors"): a frozen decoder shipped once, named by archives by id.

A prior is what every archive of a domain would otherwise pay for: the decoder, a model of
its features, and the features of the shapes it was trained on (used only to start the
features of new shapes close to a similar training shape). An archive compressed against a
prior stores its shapes' features and the prior's id, nothing else; ``decompress`` finds the
prior among the shipped ones (``assets/priors/``), the folders in ``NECGS_PRIOR_DIRS`` and the
user's cache, or takes a path, and refuses a prior whose id differs.

File layout: the ``.ncgs`` container (:mod:`necgs.coding.archive`) with metadata ``format:
"necgs-prior"``, so a mesh-set reader refuses it and vice versa. Sections:

- ``weights``: the decoder's quantized tensors (:func:`necgs.coding.sections.weight_sections`);
- ``features.model``: the feature model archives may share (``"model": "prior"``);
- ``features``: the training shapes' quantized features, one chunk;
- ``encoder`` (prior version 2, optional): the 8-bit volume encoder that gives a new shape its
  starting feature (:class:`~necgs.model.encoder.VolumeEncoder` on a pooled volume). Priors
  without one start new shapes from the nearest training feature.

The id is a SHA-256 over everything decoding depends on (architecture, tensor grids and
symbols, feature grid, feature model), so two priors with the same id decode alike; the encoder
only starts the fitting, so it is not part of the id. The
metadata's ``card`` records what the prior was trained on (sources, shape names) and how.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from necgs import __version__
from necgs.coding.archive import ArchiveReader, Section, write_archive
from necgs.coding.sections import feature_model, read_weights, weight_sections
from necgs.coding.streams import AnyModel, model_from_bytes
from necgs.config import BAND_LOSS, FitConfig, TrainConfig
from necgs.errors import ConfigError, CorruptArchiveError, NecgsError
from necgs.geometry.fit import fit_volumes
from necgs.geometry.symmetry import augment_volumes, check_augmentation
from necgs.io.datasets import resolve_dataset
from necgs.io.loading import load_meshes
from necgs.model.decoder import Decoder, DecoderConfig, decoder_config
from necgs.model.encoder import VolumeEncoder
from necgs.model.quant import QuantSpec, symmetric_spec, to_symbols
from necgs.paths import REPO_ROOT, cache_dir, data_roots
from necgs.training.patches import coarse_targets
from necgs.training.train import (
    QuantizedTensor,
    TrainedCodec,
    band_errors,
    build_decoder,
    train_autodecoder,
)

PRIOR_FORMAT = "necgs-prior"
PRIOR_VERSION = 2
PRIOR_SUFFIX = ".ncgp"
#: Priors that come with necgs.
SHIPPED_DIR = REPO_ROOT / "assets" / "priors"
#: Sub-folder of :data:`SHIPPED_DIR` holding replaced priors (found by id and name, never offered).
RETIRED = "retired"


class PriorNotFoundError(NecgsError):
    """No prior with the wanted name or id is installed."""


class PriorMismatchError(NecgsError):
    """A prior was given whose id is not the one the archive was compressed against."""


@dataclass(frozen=True)
class PriorConfig:
    """How a prior is trained (``necgs prior train``).

    The defaults are the body prior's settings but two (the shipped ``bodies`` also trains
    on mirror images and quarter turns, ``augment="turns"``, for 10,000 steps): K = 64, width
    small (8-bit), a feature of 1 channel at 8^3 per shape, trained as an auto-encoder whose
    encoder sees the volume pooled to 16^3, patch training on 4 shapes x 16 blocks of 8^3 per
    step with the presets' band loss. Measured on 16 samba frames after training on the 44 crane frames (3,000
    steps): the encoder's start plus 150 fitting visits gave CD 18.0e-3, against 38.4e-3 for
    an auto-decoder prior trained the same way and started from the mean feature (8x4^3
    features). Local features generalize far better at about the same bytes: 1x8^3 gave
    1,058x at CD 12.5e-3 where 8x4^3 gave 1,126x at 32.0e-3 (2x8^3: 675x at 9.87e-3; 4x8^3:
    372x at 7.57e-3; ``prior_samba16_crane_features*.json``).

    Attributes:
        resolution: K of the volumes.
        width: Decoder size (as :func:`necgs.model.decoder.decoder_config` takes it).
        feature_channels: C of each feature.
        feature_resolution: K' of each feature.
        fit_iterations: Fitting iterations of the training shapes' volumes.
        fit_samples: Surface samples per fitting iteration.
        steps: Training steps.
        lr: Peak learning rate.
        batch_size: Shapes per step.
        blocks_per_shape: Blocks per shape per step.
        block_size: Side of a block at resolution K.
        encoder_input: Train as an auto-encoder whose encoder pools the volumes to this side
            (None: an auto-decoder; new shapes then start from the nearest training feature).
        lambda1: Weight of the masked L1 on the band (the presets' band loss).
        tau: Half-width of that band in TSDF units.
        lambda2: Weight of the SSIM term.
        weight_bits: Quantization bits of the decoder (it is stored once, so 8).
        feature_bits: Quantization bits of the features.
        warmup_fraction: Share of warm-up steps.
        checkpoint_every: Epochs between checkpoints.
        seed: Seed of initialization and sampling.
        device: "auto", "cpu" or "cuda".
        augment: Train on exact copies of each shape too: "none", "mirror" (its mirror
            image) or "turns" (its mirror image, and both in 4 quarter turns about the up
            axis; :mod:`necgs.geometry.symmetry`).
    """

    resolution: int = 64
    width: int | str = "small"
    feature_channels: int = 1
    feature_resolution: int = 8
    fit_iterations: int = 30
    fit_samples: int = 10_000
    steps: int = 8_000
    lr: float = 5e-3
    batch_size: int = 4
    blocks_per_shape: int = 16
    block_size: int = 8
    encoder_input: int | None = 16
    lambda1: float = BAND_LOSS["lambda1"]
    tau: float = BAND_LOSS["tau"]
    lambda2: float = BAND_LOSS["lambda2"]
    weight_bits: int = 8
    feature_bits: int = 6
    warmup_fraction: float = 0.1
    checkpoint_every: int = 20
    seed: int = 0
    device: str = "auto"
    augment: str = "none"

    def __post_init__(self) -> None:
        check_augmentation(self.augment)

    def fit(self) -> FitConfig:
        """The fitting settings of the training shapes."""
        return FitConfig(
            resolution=self.resolution, iterations=self.fit_iterations, samples=self.fit_samples, device=self.device
        ).validate()

    def decoder(self) -> DecoderConfig:
        """The prior's decoder architecture."""
        return decoder_config(self.resolution, self.width, self.feature_channels, self.feature_resolution)

    def train(self, n_shapes: int) -> TrainConfig:
        """Training settings giving ``steps`` steps on ``n_shapes`` shapes."""
        if not 1 <= self.steps <= 10_000_000:
            raise ConfigError(f"prior steps must be in [1, 10000000], got {self.steps}")
        per_epoch = max(math.ceil(n_shapes / self.batch_size), 1)
        return TrainConfig(
            epochs=math.ceil(self.steps / per_epoch),
            lr=self.lr,
            batch_size=self.batch_size,
            blocks_per_shape=self.blocks_per_shape,
            block_size=self.block_size,
            mode="patch",
            weight_bits=self.weight_bits,
            feature_bits=self.feature_bits,
            warmup_fraction=self.warmup_fraction,
            checkpoint_every=self.checkpoint_every,
            seed=self.seed,
            device=self.device,
            lambda1=self.lambda1,
            tau=self.tau,
            lambda2=self.lambda2,
        ).validate()


@dataclass
class Prior:
    """A pretrained decoder and what archives compressed against it share.

    Attributes:
        name: Short name (``bodies``); archives record it beside the id for messages.
        decoder_cfg: The architecture.
        weights: Quantized decoder tensors by name.
        features: Quantized features of the training shapes, (N, C, K', K', K'); their grid
            is the one new shapes' features are quantized on.
        feature_model: The entropy model archives may share for their features (a Laplace
            per channel, so it codes any symbol of the grid).
        fit: How the training shapes were fitted (resolution, truncation, fill).
        card: What it was trained on and how (JSON-ready).
        path: The file it was read from, if any.
        encoder: The 8-bit volume encoder's tensors by name, if the prior has one.
        encoder_input: The side the encoder pools volumes to.
    """

    name: str
    decoder_cfg: DecoderConfig
    weights: dict[str, QuantizedTensor]
    features: QuantizedTensor
    feature_model: AnyModel
    fit: FitConfig
    card: dict = field(default_factory=dict)
    path: Path | None = None
    encoder: dict[str, QuantizedTensor] | None = None
    encoder_input: int | None = None

    @property
    def id(self) -> str:
        """Content hash of everything decoding depends on (16 hex digits)."""
        return prior_id(self.decoder_cfg, self.weights, self.features.spec, self.feature_model)

    @property
    def resolution(self) -> int:
        """K of the volumes the decoder produces."""
        return self.decoder_cfg.resolution

    def decoder(self, device: str | torch.device = "cpu") -> Decoder:
        """The frozen decoder with its dequantized parameters."""
        return build_decoder(self.decoder_cfg, self.weights, device)

    def volume_encoder(self) -> VolumeEncoder | None:
        """The encoder with its dequantized parameters, or None for a prior without one.

        Raises:
            ConfigError: Encoder tensors that do not fit the architecture.
        """
        if self.encoder is None:
            return None
        cfg = self.decoder_cfg
        net = VolumeEncoder(
            cfg.resolution, cfg.feature_resolution, cfg.feature_channels, input_resolution=self.encoder_input
        )
        state = net.state_dict()
        if set(state) != set(self.encoder) or any(
            tuple(state[k].shape) != tuple(q.shape) for k, q in self.encoder.items()
        ):
            raise ConfigError(f"prior {self.name!r}: its encoder tensors do not match the encoder's architecture")
        net.load_state_dict({k: q.value() for k, q in self.encoder.items()})
        return net.eval()

    def codec(self) -> TrainedCodec:
        """The prior as a trained codec over its training shapes (the ``add`` path takes it)."""
        return TrainedCodec(self.decoder_cfg, self.weights, self.features)

    def describe(self) -> dict:
        """Name, id, size, architecture and card."""
        params = int(sum(np.prod(q.shape) for q in self.weights.values()))
        return {
            "name": self.name,
            "id": self.id,
            "file": str(self.path) if self.path else None,
            "bytes": self.path.stat().st_size if self.path and self.path.is_file() else None,
            "resolution": self.resolution,
            "decoder_parameters": params,
            "training_shapes": self.features.shape[0],
            "card": self.card,
        }


def prior_id(cfg: DecoderConfig, weights: dict[str, QuantizedTensor], feature_spec: QuantSpec, model: AnyModel) -> str:
    """SHA-256 (first 16 hex digits) of the architecture, the tensors and the feature grid and model."""
    h = hashlib.sha256()
    h.update(json.dumps([cfg.to_dict(), feature_spec.to_dict()], sort_keys=True).encode())
    for name in sorted(weights):
        q = weights[name]
        h.update(json.dumps([name, q.spec.to_dict(), list(q.shape)]).encode())
        h.update(np.ascontiguousarray(q.symbols, dtype="<i8").tobytes())
    h.update(model.to_bytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------- files
def write_prior(path: str | os.PathLike, prior: Prior) -> int:
    """Write ``prior`` as a ``.ncgp`` file (atomically); returns its size in bytes."""
    wmeta, wsection = weight_sections(prior.weights, "auto")
    fmeta, fsection = weight_sections({"features": prior.features}, "auto", name="features")
    metadata = {
        "format": PRIOR_FORMAT,
        "prior_version": PRIOR_VERSION,
        "library_version": __version__,
        "id": prior.id,
        "name": prior.name,
        "decoder": prior.decoder_cfg.to_dict(),
        "fit": asdict(prior.fit),
        "weights": wmeta,
        "features": fmeta,
        "card": prior.card,
    }
    model = Section("features.model", prior.feature_model.to_bytes(), {"coder": prior.feature_model.coder})
    sections = [wsection, model, fsection]
    if prior.encoder is not None:
        emeta, esection = weight_sections(prior.encoder, "auto", name="encoder")
        metadata["encoder"] = {"input_resolution": prior.encoder_input, "tensors": emeta}
        sections.append(esection)
    return write_archive(path, metadata, sections)


def read_prior(path: str | os.PathLike) -> Prior:
    """Read and verify a prior file.

    Raises:
        NecgsError: Not a prior, a newer prior version, or content that does not match its id
            (every container error of :class:`~necgs.coding.archive.ArchiveReader` too).
    """
    with ArchiveReader(path) as reader:
        meta = reader.metadata
        if meta.get("format") != PRIOR_FORMAT:
            raise NecgsError(f"{path}: not a necgs prior (format {meta.get('format')!r})")
        if int(meta.get("prior_version", 0)) > PRIOR_VERSION:
            raise NecgsError(f"{path}: prior version {meta.get('prior_version')} is newer than this necgs reads")
        try:
            cfg = DecoderConfig.from_dict(meta["decoder"])
            weights = read_weights(reader, meta["weights"])
            features = read_weights(reader, meta["features"], name="features")["features"]
            model, _ = model_from_bytes(reader.read_section("features.model"))
            fit = FitConfig(**{"thin_voxels": 0.0, **meta["fit"]}).validate()  # files before the setting
            prior = Prior(str(meta["name"]), cfg, weights, features, model, fit, dict(meta.get("card", {})), Path(path))
            if "encoder" in meta:
                prior.encoder = read_weights(reader, meta["encoder"]["tensors"], name="encoder")
                prior.encoder_input = meta["encoder"]["input_resolution"]
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise CorruptArchiveError(f"{path}: malformed prior ({type(exc).__name__}: {exc})") from None
        if prior.id != meta.get("id"):
            raise CorruptArchiveError(f"{path}: prior content does not match its id {meta.get('id')!r}")
        build_decoder(cfg, weights)  # the tensors fit the architecture
        try:
            prior.volume_encoder()
        except ConfigError as exc:
            raise CorruptArchiveError(f"{path}: {exc}") from None
        return prior


def prior_dirs(retired: bool = False) -> list[Path]:
    """Where priors are looked for: the shipped folder, ``NECGS_PRIOR_DIRS``, the user's cache.

    Args:
        retired: Also the shipped ``retired/`` folder (last): priors a better one replaced,
            kept so that their archives still decode and ``--prior NAME`` still finds them,
            but not listed, offered in the app or tried by ``--prior auto``.
    """
    extra = [Path(p) for p in os.environ.get("NECGS_PRIOR_DIRS", "").split(os.pathsep) if p]
    folders = [SHIPPED_DIR, *extra, cache_dir("priors")] + ([SHIPPED_DIR / RETIRED] if retired else [])
    return [d for d in folders if d.is_dir()]


def _headers(retired: bool = False) -> list[tuple[Path, dict]]:
    """(path, metadata) of every readable prior file in :func:`prior_dirs` (``retired`` as there)."""
    found = []
    for folder in prior_dirs(retired):
        for path in sorted(folder.glob(f"*{PRIOR_SUFFIX}")):
            try:
                with ArchiveReader(path) as reader:
                    if reader.metadata.get("format") == PRIOR_FORMAT:
                        found.append((path, reader.metadata))
            except NecgsError:
                continue  # a damaged file in a search folder must not hide the others
    return found


def list_priors() -> list[dict]:
    """Name, id, file and card summary of every installed prior."""
    out = []
    for path, meta in _headers():
        card = meta.get("card", {})
        out.append(
            {
                "name": meta.get("name"),
                "id": meta.get("id"),
                "file": str(path),
                "bytes": path.stat().st_size,
                "resolution": meta.get("decoder", {}).get("resolution"),
                "trained_on": [t.get("source") for t in card.get("trained_on", [])],
            }
        )
    return out


def find_prior(spec: str | os.PathLike | Prior) -> Prior:
    """A prior given as an object, a file path, or the name of an installed prior.

    Raises:
        PriorNotFoundError: No such file or installed name; the message lists the names.
    """
    if isinstance(spec, Prior):
        return spec
    text = str(spec)
    if Path(text).is_file():
        return read_prior(text)
    for path, meta in _headers(retired=True):
        if meta.get("name") == text or path.stem == text:
            return read_prior(path)
    names = ", ".join(sorted({str(m.get("name")) for _, m in _headers()})) or "none installed"
    raise PriorNotFoundError(f"no prior named {text!r} and no such file (installed priors: {names})")


def find_prior_by_id(prior_id_: str, name: str = "?") -> Prior:
    """The installed prior with this id.

    Raises:
        PriorNotFoundError: None of :func:`prior_dirs` holds it.
    """
    damaged = []
    for path, meta in _headers(retired=True):
        if meta.get("id") == prior_id_:
            try:
                return read_prior(path)
            except NecgsError as exc:  # another copy may be intact
                damaged.append(str(exc))
    if damaged:
        raise PriorNotFoundError(f"prior {name!r} (id {prior_id_}) is installed but damaged: {damaged[0]}")
    raise PriorNotFoundError(
        f"this archive needs prior {name!r} (id {prior_id_}), which is not installed; "
        f"pass it with --prior PATH or put it in one of: {', '.join(str(d) for d in prior_dirs())}"
    )


def check_prior(prior: Prior, wanted_id: str, wanted_name: str, archive: str) -> Prior:
    """``prior`` if its id is ``wanted_id``; else :class:`PriorMismatchError`."""
    if prior.id != wanted_id:
        raise PriorMismatchError(
            f"{archive}: compressed against prior {wanted_name!r} (id {wanted_id}), "
            f"but the prior given is {prior.name!r} (id {prior.id})"
        )
    return prior


# ---------------------------------------------------------------------------- training
ProgressFn = Callable[[str, int, int, str], None]


def resolve_source(source: str | os.PathLike) -> tuple[Path, str]:
    """The folder of a source and its label: its path relative to a data root, or as given."""
    path = resolve_dataset(source)
    for root in data_roots():
        try:
            return path, str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return path, str(source)


def load_sources(sources: Sequence[str | os.PathLike]) -> tuple[list, list[dict]]:
    """Meshes of every source (a data set name, folder, zip or file) and a record of each.

    Returns:
        The meshes (names prefixed by their source) and, per source, its name, shape count
        and a digest of its shape names.
    """
    meshes, record = [], []
    for source in sources:
        path, label = resolve_source(source)
        loaded = load_meshes(path)
        if not loaded.meshes:
            raise NecgsError(f"{source}: no usable mesh to train a prior on")
        names = [m.name for m in loaded.meshes]
        record.append(
            {
                "source": label,
                "shapes": len(names),
                "names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()[:16],
            }
        )
        for m in loaded.meshes:
            m.name = f"{label}/{m.name}"
        meshes.extend(loaded.meshes)
    return meshes, record


def train_prior(
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    cfg: PriorConfig | None = None,
    *,
    name: str | None = None,
    init: Prior | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
) -> Prior:
    """Pretrain a decoder on one or more corpora and write it as a prior.

    Resumable: checkpoints go to ``checkpoint_dir`` (default: a cache folder named after
    the output), and a rerun with the same sources and settings continues from the last one.

    Args:
        sources: Data set names, folders, zips or mesh files.
        output: The ``.ncgp`` file to write.
        cfg: Training settings (default :class:`PriorConfig`).
        name: The prior's name (default: the output's stem).
        init: A prior to fine-tune from (same architecture).
        checkpoint_dir: Where checkpoints go.
        progress: ``progress(stage, done, total, detail)``; stages "fit" and "train".

    Returns:
        The written :class:`Prior`.
    """
    cfg = cfg or PriorConfig()
    dcfg = cfg.decoder()
    if init is not None and init.decoder_cfg.to_dict() != dcfg.to_dict():
        raise ConfigError(f"prior {init.name!r} has another architecture than the settings ask for")
    meshes, record = load_sources(sources)
    t0 = time.perf_counter()
    fit_cb = (lambda d, n: progress("fit", d, n, "")) if progress else False
    fitted = fit_volumes(meshes, cfg.fit(), progress=fit_cb)
    fit_seconds = time.perf_counter() - t0
    volumes, suffixes = augment_volumes(fitted.volumes, cfg.augment)
    names = [m.name + suffix for suffix in suffixes for m in meshes]
    tcfg = cfg.train(len(volumes))
    ckpt = Path(checkpoint_dir) if checkpoint_dir else cache_dir("checkpoints", f"prior-{Path(output).stem}")
    train_cb = (
        (lambda e, n, loss, eta: progress("train", e, n, f"loss {loss:.4f}, ETA {eta:.0f} s")) if progress else False
    )
    init_state = init.decoder().state_dict() if init is not None else None
    codec = train_autodecoder(
        volumes,
        dcfg,
        tcfg,
        checkpoint_dir=ckpt,
        progress=train_cb,
        init_decoder=init_state,
        autoencoder=cfg.encoder_input is not None,
        encoder_input=cfg.encoder_input,
    )
    decoder = codec.decoder()
    errors, _ = band_errors(decoder, codec.features.value(), volumes)
    card = {
        "trained_on": record,
        "shape_names": names,
        "settings": asdict(cfg),
        "fine_tuned_from": {"name": init.name, "id": init.id} if init is not None else None,
        "fit_seconds": round(fit_seconds, 1),
        "train_seconds": round(codec.seconds, 1),
        "resumed_from_epoch": codec.resumed_from,
        "final_loss": codec.losses[-1] if codec.losses else None,
        "band_error_median": float(np.median(errors)),
        "band_error_p90": float(np.percentile(errors, 90)),
        "date": time.strftime("%Y-%m-%d"),
    }
    prior = Prior(
        name or Path(output).stem,
        dcfg,
        codec.weights,
        codec.features,
        feature_model(codec.features, "laplace"),  # a Laplace per channel codes any symbol
        cfg.fit(),
        card,
        encoder=quantize_encoder(codec.encoder) if codec.encoder is not None else None,
        encoder_input=cfg.encoder_input,
    )
    write_prior(output, prior)
    prior.path = Path(output)
    return prior


def quantize_encoder(state: dict[str, torch.Tensor], bits: int = 8) -> dict[str, QuantizedTensor]:
    """An encoder's float parameters as 8-bit tensors (one max-abs range each), for the prior file."""
    out = {}
    for name, t in state.items():
        spec = symmetric_spec(t, bits, per_tensor=True)
        out[name] = QuantizedTensor(to_symbols(t, spec), spec, tuple(t.shape))
    return out


# ---------------------------------------------------------------------------- using
@torch.no_grad()
def start_features(prior: Prior, volumes: torch.Tensor, decoder: Decoder | None = None) -> torch.Tensor:
    """Start features for new shapes: the prior's encoder's, or else the nearest training feature.

    Args:
        prior: The prior.
        volumes: (M, 4, K, K, K) volumes of the new shapes.
        decoder: The prior's decoder, when the caller has built it already.

    Returns:
        (M, C, K', K', K') starting features.
    """
    encoder = prior.volume_encoder()
    if encoder is None:
        return nearest_features(prior, volumes, decoder)
    return torch.cat([encoder(volumes[i : i + 8]) for i in range(0, volumes.shape[0], 8)])


@torch.no_grad()
def nearest_features(prior: Prior, volumes: torch.Tensor, decoder: Decoder | None = None) -> torch.Tensor:
    """Start features for new shapes: each takes the training feature whose coarse decode is closest.

    The coarse head (resolution K/4) of the training features is compared by L1 with each new
    volume's average-pooled TSDF; a decoder without a coarse head starts from the mean feature.

    Args:
        prior: The prior.
        volumes: (M, 4, K, K, K) volumes of the new shapes.
        decoder: The prior's decoder, when the caller has built it already.

    Returns:
        (M, C, K', K', K') starting features.
    """
    train = prior.features.value()
    if not prior.decoder_cfg.coarse_head:
        return train.mean(0, keepdim=True).expand(volumes.shape[0], -1, -1, -1, -1).clone()
    decoder = decoder or prior.decoder()
    coarse = torch.cat([decoder.predict_coarse(train[i : i + 16]) for i in range(0, train.shape[0], 16)])
    targets = coarse_targets(volumes, prior.decoder_cfg.coarse_resolution)
    distance = (coarse.flatten(1)[None] - targets.flatten(1)[:, None]).abs().mean(-1)  # (M, N)
    return train[distance.argmin(1)].clone()
