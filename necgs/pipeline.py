"""Compress, decompress, inspect and grow ``.ncgs`` archives: the glue of the stages.

Archive contents of format 1.2 (see :mod:`necgs.coding.archive` for the container):

- metadata: format name and version, the :class:`~necgs.config.NecgsConfig`, the decoder
  architecture, the quantization grid of every decoder tensor and of the features, the
  batches (initial and each ``add``), and the rate the training estimated.
- section ``shapes``: one compact binary record per shape (:mod:`necgs.coding.shape_table`).
- section ``weights``: the decoder symbols, one chunk (model + payload) per tensor, or one
  chunk for all when one shared model is smaller (:mod:`necgs.coding.streams`).
- section ``features.model.<batch>``: the model shared by one batch's features (a Laplace
  per channel, or a categorical model, whichever is smaller).
- section ``features.<batch>``: varint byte lengths of the batch's shapes, then each
  shape's feature stream; one shape decodes from the weights, its batch's model and its
  own bytes.

Formats 1.0 and 1.1 (JSON shape records, one ``weights`` stream, a ``feature.<i>``
section per shape) are still read, and grown in their own layout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from necgs import __version__
from necgs.coding.archive import MINOR, ArchiveReader, Section, write_archive
from necgs.coding.entropy import _get_varints, _put_varints, decode_symbols, encode_with_model, shared_model
from necgs.coding.rate_model import codec_estimate_bytes
from necgs.coding.shape_table import pack_shapes, unpack_shapes
from necgs.coding.streams import (
    batch_feature_model,
    best_chunk,
    decode_stream,
    encode_stream,
    model_from_bytes,
    read_chunk,
    tensor_candidates,
)
from necgs.config import NecgsConfig, preset
from necgs.errors import ConfigError, CorruptArchiveError, NecgsError
from necgs.geometry.dmc import mesh_from_volume
from necgs.geometry.fit import FitConfig, fit_volumes, resolve_device
from necgs.io.loading import LoadedSet, load_meshes, save_mesh
from necgs.io.mesh import Mesh, Transform
from necgs.model.blocks import decode_volume
from necgs.model.decoder import Decoder, DecoderConfig
from necgs.model.quant import QuantSpec
from necgs.paths import cache_dir
from necgs.rate import binary_ply_bytes
from necgs.training.train import (
    QuantizedTensor,
    TrainConfig,
    TrainedCodec,
    build_decoder,
    fit_features,
    train_autodecoder,
)

if TYPE_CHECKING:
    from necgs.rate_control import RatePlan

FORMAT = "necgs"
#: progress(stage, done, total, detail) — stages: fit, train, code, decode.
StageProgress = Callable[[str, int, int, str], None]


@dataclass
class CompressResult:
    """What :func:`compress` produced.

    Attributes:
        path: The archive.
        bytes: Its size (the whole file).
        names: Shape names, in archive order.
        failures: Input files that could not be used, one line each.
        seconds: Wall time per stage ("fit", "train", "code", "check": the empty-surface check).
        resumed_from_epoch: Training resumed from this checkpointed epoch (0: fresh).
        empty_shapes: Shapes whose decoded TSDF has no zero crossing, so they decode to no
            surface (a collapsed or undertrained decoder); the archive is still written.
        ratio_ply: The meshes as binary PLY over the archive (what rate control targets).
        rate_plan: The setting rate control chose, when a target was given.
    """

    path: Path
    bytes: int
    names: list[str]
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    resumed_from_epoch: int = 0
    empty_shapes: list[str] = field(default_factory=list)
    ratio_ply: float | None = None
    rate_plan: RatePlan | None = None


def _as_loaded(source) -> LoadedSet:
    if isinstance(source, LoadedSet):
        return source
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], Mesh):
        return LoadedSet(list(source), [], [Path(m.name) for m in source], [binary_ply_bytes(m) for m in source])
    if isinstance(source, (str, os.PathLike)):
        from necgs.io.datasets import resolve_dataset

        source = resolve_dataset(source)
    return load_meshes(source)


def _emit(progress: StageProgress | None, stage: str, done: int, total: int, detail: str = "") -> None:
    if progress is not None:
        progress(stage, done, total, detail)


def compress(
    source,
    output: str | os.PathLike,
    config: NecgsConfig | None = None,
    *,
    progress: StageProgress | None = None,
    cancel: Callable[[], bool] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    target_ratio: float | None = None,
    target_bytes: int | None = None,
) -> CompressResult:
    """Compress a set of meshes into one ``.ncgs`` archive.

    Args:
        source: A folder, zip, file, list of files, list of :class:`Mesh`, or a LoadedSet.
        output: The archive path (written atomically).
        config: Settings (default: the ``quick`` preset).
        progress: Stage callback; ``None`` shows tqdm bars.
        cancel: Polled during training; True stops with KeyboardInterrupt.
        checkpoint_dir: Training checkpoints (default: a cache folder keyed by the run),
            so an interrupted run resumes.
        target_ratio: Rate control: wanted ratio of the meshes as binary PLY to the archive;
            the width, bits and lambda_R of ``config`` are replaced by a measured table's
            choice (:mod:`necgs.rate_control`).
        target_bytes: Rate control: wanted archive size (exclusive with ``target_ratio``).

    Returns:
        The :class:`CompressResult`.
    """
    cfg = (config or preset("quick")).validate()
    loaded = _as_loaded(source)
    if not loaded.meshes:
        reasons = "; ".join(str(f) for f in loaded.failures[:3])
        raise NecgsError(f"{source}: no usable mesh" + (f" ({reasons})" if reasons else ""))
    plan = None
    if target_ratio is not None or target_bytes is not None:
        from necgs.rate_control import plan_rate

        plan = plan_rate(cfg, loaded.meshes, target_ratio=target_ratio, target_bytes=target_bytes)
        cfg = plan.config
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    fit_cb = (lambda d, n: _emit(progress, "fit", d, n)) if progress else True
    fitted = fit_volumes(loaded.meshes, cfg.fit, progress=fit_cb)
    seconds["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    train_cb = (
        (lambda e, n, loss, eta: _emit(progress, "train", e, n, f"loss {loss:.4f}, ETA {eta:.0f} s"))
        if progress
        else True
    )
    ckpt = Path(checkpoint_dir) if checkpoint_dir else cache_dir("checkpoints", Path(output).stem)
    codec = train_autodecoder(
        fitted.volumes,
        cfg.decoder(),
        cfg.train,
        checkpoint_dir=ckpt,
        progress=train_cb,
        cancel=cancel,
        autoencoder=cfg.autoencoder,
    )
    seconds["train"] = time.perf_counter() - t
    t = time.perf_counter()
    _emit(progress, "code", 0, 1)
    shapes = [
        _shape_record(m, tr, b, batch=0) for m, tr, b in zip(loaded.meshes, fitted.transforms, loaded.source_bytes)
    ]
    size = write_codec_archive(output, cfg, codec, shapes)
    seconds["code"] = time.perf_counter() - t
    _emit(progress, "code", 1, 1)
    t = time.perf_counter()
    empty = shapes_without_surface(output, device=cfg.train.device)
    seconds["check"] = time.perf_counter() - t
    ply = sum(binary_ply_bytes(m) for m in loaded.meshes)
    return CompressResult(
        Path(output),
        size,
        [m.name for m in loaded.meshes],
        [str(f) for f in loaded.failures],
        seconds,
        codec.resumed_from,
        empty,
        ply / size,
        plan,
    )


def shapes_without_surface(archive: str | os.PathLike | bytes, device: str = "auto") -> list[str]:
    """Names of the shapes of an archive whose decoded TSDF never changes sign (no surface).

    Runs the decoder only (no marching cubes): one forward pass per shape.
    """
    dev = resolve_device(device)
    empty = []
    with open_archive(archive) as arc:
        decoder = arc.decoder(dev)
        for i, record in enumerate(arc.shapes):
            with torch.no_grad():
                tsdf = decoder(arc.feature(i)[None].to(dev))[0, 0]
            if not (bool((tsdf < 0).any()) and bool((tsdf > 0).any())):
                empty.append(str(record.get("name", i)))
    return empty


def _shape_record(mesh: Mesh, transform: Transform, source_bytes: int, batch: int) -> dict:
    return {
        "name": mesh.name,
        "transform": transform.to_dict(),
        "n_vertices": mesh.n_vertices,
        "n_faces": mesh.n_faces,
        "source_bytes": int(source_bytes),
        "ply_bytes": binary_ply_bytes(mesh),
        "batch": batch,
    }


def _weight_sections(codec: TrainedCodec, coder: str) -> tuple[dict, Section]:
    """The ``weights`` section: a chunk per tensor, or one shared chunk when that is smaller.

    Any set of named tensors works; their order is stored in the metadata. ``coder``
    "laplace" always codes a Laplace per tensor: exactly the models the rate term of
    training estimates.
    """
    names = list(codec.weights)
    tensors = [codec.weights[n] for n in names]
    chunks = [best_chunk(q.symbols, tensor_candidates(q.symbols, q.spec.bits, q.shape, coder)) for q in tensors]
    per_tensor = b"".join(blob for _, blob in chunks)
    symbols = np.concatenate([q.symbols for q in tensors])
    joint_model, joint = None, None
    if coder != "laplace" and len({q.spec.bits for q in tensors}) == 1:  # one alphabet: one shared model is an option
        joint_model, joint = best_chunk(
            symbols, tensor_candidates(symbols, tensors[0].spec.bits, (symbols.size,), coder)
        )
    meta = {
        "order": names,
        "specs": {n: codec.weights[n].spec.to_dict() for n in names},
        "shapes": {n: list(codec.weights[n].shape) for n in names},
    }
    if joint is not None and len(joint) < len(per_tensor):
        info = {"layout": "joint", "coder": joint_model.coder, "count": int(symbols.size)}
        return meta, Section("weights", joint, info)
    info = {
        "layout": "tensors",
        "coder": "per-tensor",
        "coders": [m.coder for m, _ in chunks],
        "count": int(symbols.size),
    }
    return meta, Section("weights", per_tensor, info)


def _feature_sections(features: QuantizedTensor, batch: int, coder: str) -> tuple[dict, list[Section]]:
    """Sections ``features.model.<batch>`` and ``features.<batch>`` of one batch's features."""
    m = features.shape[0]
    c = features.shape[1]
    per_shape = int(np.prod(features.shape[1:]))
    streams = features.symbols.reshape(m, c, per_shape // c)
    model = batch_feature_model(streams, features.spec.bits, coder)
    payloads = [encode_stream(s, model) for s in streams.reshape(m, per_shape)]
    body = _put_varints(np.array([len(p) for p in payloads], dtype=np.int64)) + b"".join(payloads)
    sections = [
        Section(f"features.model.{batch}", model.to_bytes(), {"coder": model.coder}),
        Section(f"features.{batch}", body, {"count": per_shape, "shapes": m}),
    ]
    meta = {"spec": features.spec.to_dict(), "shape": list(features.shape[1:])}
    return meta, sections


def _legacy_feature_sections(
    features: QuantizedTensor, first_index: int, batch: int, coder: str
) -> tuple[dict, list[Section]]:
    """Format 1.1 feature sections (one per shape), used when growing a 1.0/1.1 archive."""
    per_shape = int(np.prod(features.shape[1:]))
    streams = list(features.symbols.reshape(features.shape[0], per_shape))
    model = shared_model(streams, coder if coder in ("rans", "huffman", "raw") else "auto")
    sections = [Section(f"features.model.{batch}", model.to_bytes(), {"coder": model.coder})]
    for k, stream in enumerate(streams):
        sections.append(
            Section(
                f"feature.{first_index + k}", encode_with_model(stream, model), {"batch": batch, "count": per_shape}
            )
        )
    meta = {"spec": features.spec.to_dict(), "shape": list(features.shape[1:])}
    return meta, sections


def _rate_estimate(codec: TrainedCodec) -> dict[str, float]:
    """The training rate term's estimate of the payload bytes, reported beside the real ones."""
    f = codec.features
    return codec_estimate_bytes(
        {n: (q.symbols, q.spec) for n, q in codec.weights.items()},
        f.symbols.reshape(f.shape[0], f.shape[1], -1),
        f.spec,
    )


def write_codec_archive(output, cfg: NecgsConfig, codec: TrainedCodec, shapes: list[dict]) -> int:
    """Entropy-code a trained codec and write a format 1.2 archive; returns its size."""
    wmeta, wsection = _weight_sections(codec, cfg.coder)
    fmeta, fsections = _feature_sections(codec.features, 0, cfg.coder)
    metadata = {
        "format": FORMAT,
        "library_version": __version__,
        "config": cfg.to_dict(),
        "decoder": codec.decoder_cfg.to_dict(),
        "weights": wmeta,
        "batches": [{"batch": 0, "mode": "initial", "features": fmeta}],
        "train_seconds": round(codec.seconds, 3),
        "rate_estimate": _rate_estimate(codec),
    }
    return write_archive(output, metadata, [Section("shapes", pack_shapes(shapes)), wsection, *fsections])


# ---------------------------------------------------------------------------- reading
@dataclass
class OpenedArchive:
    """An archive's parsed header with lazy access to its decoder and features.

    Attributes:
        reader: The container.
        decoder_cfg: Decoder architecture.
        shapes: One record per shape (name, transform, counts, batch), whatever the format.
        deform: Whether the volumes carry the deformation channels.
    """

    reader: ArchiveReader
    decoder_cfg: DecoderConfig
    shapes: list[dict]
    deform: bool
    _batches: dict = field(default_factory=dict, repr=False)

    @property
    def metadata(self) -> dict:
        """The raw JSON metadata."""
        return self.reader.metadata

    @property
    def compact(self) -> bool:
        """True for the 1.2 layout (shape table, a feature section per batch, chunked weights)."""
        return "shapes" in self.reader.section_names()

    def weights(self) -> dict[str, QuantizedTensor]:
        """Decode the decoder's quantized parameters."""
        meta = self.metadata["weights"]
        info = self.reader.section_info("weights").info
        count = _bounded_count(info.get("count"), self.reader, "weights")
        data = self.reader.read_section("weights")
        shapes = {name: tuple(int(x) for x in meta["shapes"][name]) for name in meta["order"]}
        sizes = [int(np.prod(shape)) for shape in shapes.values()]
        if sum(sizes) != count:
            raise CorruptArchiveError(f"{self.reader.name}: weights section does not match the decoder")
        if self.compact and info.get("layout") == "tensors":
            pieces, pos = [], 0
            for n in sizes:
                symbols, _, pos = read_chunk(data, pos, n)
                pieces.append(symbols)
            if pos != len(data):
                raise CorruptArchiveError(f"{self.reader.name}: weights section has trailing bytes")
            symbols = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        elif self.compact:
            symbols, _, pos = read_chunk(data, 0, count)
            if pos != len(data):
                raise CorruptArchiveError(f"{self.reader.name}: weights section has trailing bytes")
        else:
            symbols = decode_symbols(data, count)
        out, pos = {}, 0
        for (name, shape), n in zip(shapes.items(), sizes):
            spec = QuantSpec.from_dict(meta["specs"][name])
            piece = symbols[pos : pos + n]
            if piece.size and (piece.min() < 0 or piece.max() >= spec.levels):
                raise CorruptArchiveError(f"{self.reader.name}: tensor {name} holds symbols outside its grid")
            out[name] = QuantizedTensor(piece, spec, shape)
            pos += n
        return out

    def decoder(self, device="cpu") -> Decoder:
        """The decoder rebuilt from its symbols."""
        try:
            return build_decoder(self.decoder_cfg, self.weights(), device)
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise CorruptArchiveError(f"{self.reader.name}: decoder does not match its description ({exc})") from None

    def feature(self, index: int) -> torch.Tensor:
        """Dequantized feature (C, K', K', K') of shape ``index``."""
        bmeta = self._batch(int(self.shapes[index]["batch"]))["features"]
        return QuantizedTensor(
            self.feature_symbols(index), QuantSpec.from_dict(bmeta["spec"]), tuple(int(x) for x in bmeta["shape"])
        ).value()

    def feature_symbols(self, index: int) -> np.ndarray:
        """Feature symbols of a shape, (C * K'^3,) int64, checked against their grid."""
        batch = int(self.shapes[index]["batch"])
        bmeta = self._batch(batch)["features"]
        count = int(np.prod([int(x) for x in bmeta["shape"]]))
        model, payload = self._feature_stream(index, batch)
        symbols = decode_stream(payload, model, count)
        if symbols.size and symbols.max() >= QuantSpec.from_dict(bmeta["spec"]).levels:
            raise CorruptArchiveError(f"{self.reader.name}: feature {index} holds symbols outside its grid")
        return symbols

    def _feature_stream(self, index: int, batch: int):
        """The model and payload bytes of shape ``index`` (in batch ``batch``)."""
        model, _ = model_from_bytes(self.reader.read_section(f"features.model.{batch}"))
        if not self.compact:
            return model, self.reader.read_section(f"feature.{index}")
        if batch not in self._batches:
            self._batches[batch] = self._split_batch(batch)
        members = [i for i, s in enumerate(self.shapes) if int(s["batch"]) == batch]
        return model, self._batches[batch][members.index(index)]

    def _split_batch(self, batch: int) -> list[bytes]:
        """The per-shape payloads of section ``features.<batch>``."""
        data = self.reader.read_section(f"features.{batch}")
        members = sum(1 for s in self.shapes if int(s["batch"]) == batch)
        if members > len(data) + 1:
            raise CorruptArchiveError(f"{self.reader.name}: features of batch {batch} are truncated")
        lengths, pos = _get_varints(data, members, 0)
        ends = pos + np.cumsum(lengths)
        if members and ends[-1] != len(data):
            raise CorruptArchiveError(f"{self.reader.name}: features of batch {batch} do not match their lengths")
        starts = np.concatenate([[pos], ends[:-1]]).astype(np.int64)
        return [data[a:b] for a, b in zip(starts.tolist(), ends.tolist())]

    def _batch(self, batch: int) -> dict:
        for b in self.metadata["batches"]:
            if int(b["batch"]) == batch:
                return b
        raise CorruptArchiveError(f"{self.reader.name}: unknown batch {batch}")

    def index_of(self, name: str) -> int:
        """Index of a shape by name."""
        for i, s in enumerate(self.shapes):
            if s["name"] == name:
                return i
        raise NecgsError(f"{self.reader.name}: no shape named {name!r}")

    def close(self) -> None:
        """Close the file."""
        self.reader.close()

    def __enter__(self) -> OpenedArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _bounded_count(value, reader: ArchiveReader, name: str) -> int:
    if not isinstance(value, int) or value < 0 or value > 64 * reader.total_bytes + 1024:
        raise CorruptArchiveError(f"{reader.name}: section {name!r} announces an implausible symbol count")
    return value


def open_archive(path: str | os.PathLike | bytes) -> OpenedArchive:
    """Open and validate an archive's header (sections are read lazily)."""
    reader = ArchiveReader(path)
    try:
        meta = reader.metadata
        if meta.get("format") != FORMAT:
            raise CorruptArchiveError(f"{reader.name}: not a necgs mesh-set archive")
        decoder_cfg = DecoderConfig.from_dict(meta["decoder"])
        shapes = unpack_shapes(reader.read_section("shapes")) if "shapes" in reader.section_names() else meta["shapes"]
        if not isinstance(shapes, list) or not all(isinstance(s, dict) for s in shapes):
            raise CorruptArchiveError(f"{reader.name}: malformed shape table")
        deform = bool(meta["config"].get("deform", True))
        return OpenedArchive(reader, decoder_cfg, shapes, deform)
    except (KeyError, TypeError, ValueError, ConfigError, AttributeError) as exc:
        reader.close()
        raise CorruptArchiveError(f"{reader.name}: malformed metadata ({type(exc).__name__}: {exc})") from None
    except Exception:
        reader.close()
        raise


def decompress(
    archive: str | os.PathLike | bytes,
    output_dir: str | os.PathLike | None = None,
    *,
    shapes: Sequence[str] | None = None,
    fmt: str = "ply",
    device: str = "auto",
    progress: StageProgress | None = None,
    sparse: bool = True,
) -> list[Mesh]:
    """Decode meshes (original coordinates) from an archive; optionally write them.

    Args:
        archive: Path or bytes of a ``.ncgs`` file.
        output_dir: If given, each mesh is written there as ``<name>.<fmt>``.
        shapes: Names to decode (default: all). Others are not decoded.
        fmt: Output format suffix (ply, obj, off, stl, glb).
        device: "auto", "cpu" or "cuda".
        progress: Stage callback ("decode", i, n).
        sparse: Run the fine decoder levels only near the surface where that is faster
            (K >= 128 and a decoder with a coarse head, :func:`necgs.model.blocks.decode_volume`);
            ``False`` decodes every voxel.

    Returns:
        The decoded meshes, in archive order (or the order of ``shapes``).
    """
    dev = resolve_device(device)
    with open_archive(archive) as arc:
        indices = list(range(len(arc.shapes))) if shapes is None else [arc.index_of(n) for n in shapes]
        decoder = arc.decoder(dev)
        out = []
        for k, i in enumerate(indices):
            out.append(_decode_shape(arc, decoder, i, dev, sparse))
            _emit(progress, "decode", k + 1, len(indices))
    if output_dir is not None:
        for mesh in out:
            save_mesh(mesh, Path(output_dir) / f"{mesh.name}.{fmt.lstrip('.')}")
    return out


def _decode_shape(arc: OpenedArchive, decoder: Decoder, index: int, device, sparse: bool) -> Mesh:
    record = arc.shapes[index]
    try:
        transform = Transform.from_dict(record["transform"])
        name = str(record["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptArchiveError(f"{arc.reader.name}: shape {index} has a malformed record ({exc})") from None
    volume = decode_volume(decoder, arc.feature(index)[None].to(device), sparse)[0].cpu()
    return mesh_from_volume(volume, name, deform=arc.deform).transformed(transform, inverse=True)


def describe(archive: str | os.PathLike) -> dict:
    """Header summary, bytes per section kind, ratio and per-shape costs of an archive."""
    with open_archive(archive) as arc:
        r = arc.reader
        sizes = {name: r.section_info(name).length for name in r.section_names()}
        feature_sections = [
            k for k in sizes if k.startswith(("feature.", "features.")) and not k.startswith("features.model.")
        ]
        weights_bytes = sizes.get("weights", 0)
        model_bytes = sum(v for k, v in sizes.items() if k.startswith("features.model."))
        feature_bytes = sum(sizes[k] for k in feature_sections)
        shapes = []
        for i, s in enumerate(arc.shapes):
            own = len(arc._feature_stream(i, int(s["batch"]))[1]) if arc.compact else sizes.get(f"feature.{i}", 0)
            shapes.append(
                {
                    "name": s["name"],
                    "batch": s.get("batch", 0),
                    "feature_bytes": own,
                    "n_vertices": s.get("n_vertices"),
                    "n_faces": s.get("n_faces"),
                }
            )
        source = sum(int(s.get("source_bytes", 0)) for s in arc.shapes)
        ply = sum(int(s.get("ply_bytes", 0)) for s in arc.shapes)
        return {
            "file": str(archive),
            "version": ".".join(map(str, r.version)),
            "bytes": r.total_bytes,
            "header_bytes": r.total_bytes - weights_bytes - model_bytes - feature_bytes,
            "weights_bytes": weights_bytes,
            "feature_model_bytes": model_bytes,
            "feature_bytes": feature_bytes,
            "rate_estimate": arc.metadata.get("rate_estimate"),
            "n_shapes": len(arc.shapes),
            "decoder": arc.decoder_cfg.to_dict(),
            "decoder_parameters": int(sum(np.prod(v) for v in arc.metadata["weights"]["shapes"].values())),
            "coders": {
                name: r.section_info(name).info.get("coder")
                for name in r.section_names()
                if "coder" in r.section_info(name).info
            },
            "config": arc.metadata.get("config"),
            "batches": [{"batch": b["batch"], "mode": b.get("mode")} for b in arc.metadata["batches"]],
            "ratio_files": source / r.total_bytes if source else None,
            "ratio_ply": ply / r.total_bytes if ply else None,
            "shapes": shapes,
        }


# ---------------------------------------------------------------------------- growing
def add_shapes(
    archive: str | os.PathLike,
    source,
    output: str | os.PathLike,
    *,
    epochs: int | None = None,
    progress: StageProgress | None = None,
) -> CompressResult:
    """Add new shapes to an archive, optimizing only their features (frozen decoder).

    Old shapes keep their sections byte for byte, so they decode bit-identically.

    Args:
        archive: The existing archive.
        source: New meshes (folder, zip, files, list of Mesh).
        output: The grown archive (may equal ``archive``; written atomically).
        epochs: Feature-fitting epochs (default: the archive's training epochs).
        progress: Stage callback.

    Returns:
        The :class:`CompressResult` of the grown archive (names of all shapes).
    """
    with open_archive(archive) as arc:
        cfg = _config_from_metadata(arc.metadata["config"])
        old_names = {s["name"] for s in arc.shapes}
        loaded = _as_loaded(source)
        if not loaded.meshes:
            raise NecgsError(f"{source}: no usable mesh to add")
        clash = sorted(old_names & {m.name for m in loaded.meshes})
        if clash:
            raise NecgsError(f"{archive}: shape names already in the archive: {', '.join(clash[:5])}")
        codec_old = TrainedCodec(arc.decoder_cfg, arc.weights(), _initial_features(arc))
        old_sections = [
            Section(n, arc.reader.read_section(n), arc.reader.section_info(n).info) for n in arc.reader.section_names()
        ]
        metadata = dict(arc.metadata)
        n_old = len(arc.shapes)
        old_records = list(arc.shapes)
        compact = arc.compact
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    fitted = fit_volumes(
        loaded.meshes, cfg.fit, progress=(lambda d, n: _emit(progress, "fit", d, n)) if progress else True
    )
    seconds["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    tcfg = cfg.train if epochs is None else replace(cfg.train, epochs=epochs)
    new_features = fit_features(
        codec_old,
        fitted.volumes,
        tcfg,
        progress=(lambda e, n, loss, eta: _emit(progress, "train", e, n, f"loss {loss:.4f}")) if progress else False,
    )
    seconds["train"] = time.perf_counter() - t
    batch = max(int(b["batch"]) for b in metadata["batches"]) + 1
    records = [
        *old_records,
        *(_shape_record(m, tr, b, batch) for m, tr, b in zip(loaded.meshes, fitted.transforms, loaded.source_bytes)),
    ]
    if compact:
        fmeta, fsections = _feature_sections(new_features, batch, cfg.coder)
        old_sections = [Section("shapes", pack_shapes(records)) if s.name == "shapes" else s for s in old_sections]
        minor = MINOR
    else:  # a 1.0/1.1 archive grows in its own layout, so its old shapes stay bit-identical
        fmeta, fsections = _legacy_feature_sections(new_features, n_old, batch, cfg.coder)
        metadata["shapes"] = records
        minor = 1
    metadata["batches"] = [*metadata["batches"], {"batch": batch, "mode": "frozen-decoder", "features": fmeta}]
    size = write_archive(output, metadata, [*old_sections, *fsections], minor)
    names = [s["name"] for s in records]
    return CompressResult(Path(output), size, names, [str(f) for f in loaded.failures], seconds)


def _initial_features(arc: OpenedArchive) -> QuantizedTensor:
    """Features of the shapes of the initial batch (their grid is reused for added shapes)."""
    bmeta = arc.metadata["batches"][0]["features"]
    shape = tuple(int(x) for x in bmeta["shape"])
    first = [i for i, s in enumerate(arc.shapes) if int(s["batch"]) == 0]
    symbols = np.concatenate([arc.feature_symbols(i) for i in first])
    return QuantizedTensor(symbols, QuantSpec.from_dict(bmeta["spec"]), (len(first), *shape))


def _config_from_metadata(data: dict) -> NecgsConfig:
    try:
        fit = FitConfig(**data["fit"])
        train = TrainConfig(**data["train"])
        width = data["width"]
        width = tuple(width) if isinstance(width, list) else width
        return NecgsConfig(
            fit=fit,
            width=width,
            feature_channels=int(data["feature_channels"]),
            feature_resolution=int(data["feature_resolution"]),
            train=train,
            deform=bool(data["deform"]),
            autoencoder=bool(data.get("autoencoder", False)),
            coder=str(data["coder"]),
        ).validate()
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptArchiveError(f"archive settings are malformed ({exc})") from None
