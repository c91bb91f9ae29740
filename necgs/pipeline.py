"""Compress, decompress, inspect and grow ``.ncgs`` archives: the glue of the stages.

Archive contents (see :mod:`necgs.coding.archive` for the container):

- metadata: format name and version, the :class:`~necgs.config.NecgsConfig`, the decoder
  architecture, the quantization grid of every decoder tensor and of the features, and
  one record per shape (name, transform back to original coordinates, vertex/face counts,
  source bytes, the batch that added it).
- section ``weights``: all decoder symbols, one entropy-coded stream with its own model.
- section ``features.model.<batch>``: the entropy model shared by one batch's features.
- section ``feature.<i>``: shape i's feature symbols, coded with its batch's model, so a
  single shape decodes from the weights, one small model and its own section.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from necgs import __version__
from necgs.coding.archive import ArchiveReader, Section, write_archive
from necgs.coding.entropy import EntropyModel, decode_symbols, decode_with_model, encode_symbols, encode_with_model, shared_model
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
from necgs.training.train import QuantizedTensor, TrainConfig, TrainedCodec, build_decoder, fit_features, train_autodecoder

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
    """

    path: Path
    bytes: int
    names: list[str]
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    resumed_from_epoch: int = 0
    empty_shapes: list[str] = field(default_factory=list)


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

    Returns:
        The :class:`CompressResult`.
    """
    cfg = (config or preset("quick")).validate()
    loaded = _as_loaded(source)
    if not loaded.meshes:
        reasons = "; ".join(str(f) for f in loaded.failures[:3])
        raise NecgsError(f"{source}: no usable mesh" + (f" ({reasons})" if reasons else ""))
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    fit_cb = (lambda d, n: _emit(progress, "fit", d, n)) if progress else True
    fitted = fit_volumes(loaded.meshes, cfg.fit, progress=fit_cb)
    seconds["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    train_cb = (lambda e, n, loss, eta: _emit(progress, "train", e, n, f"loss {loss:.4f}, ETA {eta:.0f} s")) if progress else True
    ckpt = Path(checkpoint_dir) if checkpoint_dir else cache_dir("checkpoints", Path(output).stem)
    codec = train_autodecoder(fitted.volumes, cfg.decoder(), cfg.train, checkpoint_dir=ckpt,
                              progress=train_cb, cancel=cancel, autoencoder=cfg.autoencoder)
    seconds["train"] = time.perf_counter() - t
    t = time.perf_counter()
    _emit(progress, "code", 0, 1)
    shapes = [_shape_record(m, tr, b, batch=0) for m, tr, b in zip(loaded.meshes, fitted.transforms, loaded.source_bytes)]
    size = write_codec_archive(output, cfg, codec, shapes)
    seconds["code"] = time.perf_counter() - t
    _emit(progress, "code", 1, 1)
    t = time.perf_counter()
    empty = shapes_without_surface(output, device=cfg.train.device)
    seconds["check"] = time.perf_counter() - t
    return CompressResult(Path(output), size, [m.name for m in loaded.meshes], [str(f) for f in loaded.failures],
                          seconds, codec.resumed_from, empty)


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
    return {"name": mesh.name, "transform": transform.to_dict(), "n_vertices": mesh.n_vertices,
            "n_faces": mesh.n_faces, "source_bytes": int(source_bytes), "ply_bytes": binary_ply_bytes(mesh),
            "batch": batch}


def _weight_sections(codec: TrainedCodec, coder: str) -> tuple[dict, Section]:
    names = list(codec.weights)
    symbols = np.concatenate([codec.weights[n].symbols for n in names])
    coder_name, blob = encode_symbols(symbols, coder)
    meta = {
        "order": names,
        "specs": {n: codec.weights[n].spec.to_dict() for n in names},
        "shapes": {n: list(codec.weights[n].shape) for n in names},
    }
    return meta, Section("weights", blob, {"coder": coder_name, "count": int(symbols.size)})


def _feature_sections(features: QuantizedTensor, first_index: int, batch: int, coder: str) -> tuple[dict, list[Section]]:
    per_shape = int(np.prod(features.shape[1:]))
    streams = list(features.symbols.reshape(features.shape[0], per_shape))
    model = shared_model(streams, coder)
    sections = [Section(f"features.model.{batch}", model.to_bytes(), {"coder": model.coder})]
    for k, stream in enumerate(streams):
        sections.append(Section(f"feature.{first_index + k}", encode_with_model(stream, model),
                                {"batch": batch, "count": per_shape}))
    meta = {"spec": features.spec.to_dict(), "shape": list(features.shape[1:])}
    return meta, sections


def write_codec_archive(output, cfg: NecgsConfig, codec: TrainedCodec, shapes: list[dict]) -> int:
    """Entropy-code a trained codec and write the archive; returns its size."""
    wmeta, wsection = _weight_sections(codec, cfg.coder)
    fmeta, fsections = _feature_sections(codec.features, 0, 0, cfg.coder)
    metadata = {
        "format": FORMAT,
        "library_version": __version__,
        "config": cfg.to_dict(),
        "decoder": codec.decoder_cfg.to_dict(),
        "weights": wmeta,
        "batches": [{"batch": 0, "mode": "initial", "features": fmeta}],
        "shapes": shapes,
        "train_seconds": round(codec.seconds, 3),
    }
    return write_archive(output, metadata, [wsection, *fsections])


# ---------------------------------------------------------------------------- reading
@dataclass
class OpenedArchive:
    """An archive's parsed header with lazy access to its decoder and features."""

    reader: ArchiveReader
    decoder_cfg: DecoderConfig
    shapes: list[dict]
    deform: bool

    @property
    def metadata(self) -> dict:
        """The raw JSON metadata."""
        return self.reader.metadata

    def weights(self) -> dict[str, QuantizedTensor]:
        """Decode the decoder's quantized parameters."""
        meta = self.metadata["weights"]
        info = self.reader.section_info("weights").info
        count = _bounded_count(info.get("count"), self.reader, "weights")
        symbols = decode_symbols(self.reader.read_section("weights"), count)
        out, pos = {}, 0
        for name in meta["order"]:
            shape = tuple(int(x) for x in meta["shapes"][name])
            n = int(np.prod(shape))
            if pos + n > symbols.size:
                raise CorruptArchiveError(f"{self.reader.name}: weights section is shorter than the decoder")
            out[name] = QuantizedTensor(symbols[pos : pos + n], QuantSpec.from_dict(meta["specs"][name]), shape)
            pos += n
        if pos != symbols.size:
            raise CorruptArchiveError(f"{self.reader.name}: weights section does not match the decoder")
        return out

    def decoder(self, device="cpu") -> Decoder:
        """The decoder rebuilt from its symbols."""
        try:
            return build_decoder(self.decoder_cfg, self.weights(), device)
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise CorruptArchiveError(f"{self.reader.name}: decoder does not match its description ({exc})") from None

    def feature(self, index: int) -> torch.Tensor:
        """Dequantized feature (C, K', K', K') of shape ``index``."""
        batch = int(self.shapes[index]["batch"])
        bmeta = self._batch(batch)["features"]
        shape = tuple(int(x) for x in bmeta["shape"])
        model, _ = EntropyModel.from_bytes(self.reader.read_section(f"features.model.{batch}"))
        symbols = decode_with_model(self.reader.read_section(f"feature.{index}"), model, int(np.prod(shape)))
        spec = QuantSpec.from_dict(bmeta["spec"])
        if symbols.size and symbols.max() >= spec.levels:
            raise CorruptArchiveError(f"{self.reader.name}: feature {index} holds symbols outside its grid")
        return QuantizedTensor(symbols, spec, shape).value()

    def feature_symbols(self, index: int) -> np.ndarray:
        """Raw feature symbols of a shape (used when growing an archive)."""
        batch = int(self.shapes[index]["batch"])
        bmeta = self._batch(batch)["features"]
        model, _ = EntropyModel.from_bytes(self.reader.read_section(f"features.model.{batch}"))
        return decode_with_model(self.reader.read_section(f"feature.{index}"), model, int(np.prod(bmeta["shape"])))

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

    def __enter__(self) -> "OpenedArchive":
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
        shapes = meta["shapes"]
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
        header_bytes = r.total_bytes - sum(sizes.values())
        shapes = []
        for i, s in enumerate(arc.shapes):
            shapes.append({"name": s["name"], "batch": s.get("batch", 0), "feature_bytes": sizes.get(f"feature.{i}", 0),
                           "n_vertices": s.get("n_vertices"), "n_faces": s.get("n_faces")})
        source = sum(int(s.get("source_bytes", 0)) for s in arc.shapes)
        ply = sum(int(s.get("ply_bytes", 0)) for s in arc.shapes)
        return {
            "file": str(archive),
            "version": ".".join(map(str, r.version)),
            "bytes": r.total_bytes,
            "header_bytes": header_bytes,
            "weights_bytes": sizes.get("weights", 0),
            "feature_model_bytes": sum(v for k, v in sizes.items() if k.startswith("features.model.")),
            "feature_bytes": sum(v for k, v in sizes.items() if k.startswith("feature.")),
            "n_shapes": len(arc.shapes),
            "decoder": arc.decoder_cfg.to_dict(),
            "decoder_parameters": int(sum(np.prod(v) for v in arc.metadata["weights"]["shapes"].values())),
            "coders": {name: r.section_info(name).info.get("coder") for name in r.section_names() if "coder" in r.section_info(name).info},
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
        old_sections = [Section(n, arc.reader.read_section(n), arc.reader.section_info(n).info) for n in arc.reader.section_names()]
        metadata = dict(arc.metadata)
        n_old = len(arc.shapes)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    fitted = fit_volumes(loaded.meshes, cfg.fit, progress=(lambda d, n: _emit(progress, "fit", d, n)) if progress else True)
    seconds["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    tcfg = cfg.train if epochs is None else replace(cfg.train, epochs=epochs)
    new_features = fit_features(codec_old, fitted.volumes, tcfg,
                                progress=(lambda e, n, l, eta: _emit(progress, "train", e, n, f"loss {l:.4f}")) if progress else False)
    seconds["train"] = time.perf_counter() - t
    batch = max(int(b["batch"]) for b in metadata["batches"]) + 1
    fmeta, fsections = _feature_sections(new_features, n_old, batch, cfg.coder)
    metadata["batches"] = [*metadata["batches"], {"batch": batch, "mode": "frozen-decoder", "features": fmeta}]
    metadata["shapes"] = [*metadata["shapes"], *(_shape_record(m, tr, b, batch) for m, tr, b in
                                                 zip(loaded.meshes, fitted.transforms, loaded.source_bytes))]
    size = write_archive(output, metadata, [*old_sections, *fsections])
    names = [s["name"] for s in metadata["shapes"]]
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
        return NecgsConfig(fit=fit, width=width, feature_channels=int(data["feature_channels"]),
                           feature_resolution=int(data["feature_resolution"]), train=train,
                           deform=bool(data["deform"]), autoencoder=bool(data.get("autoencoder", False)),
                           coder=str(data["coder"])).validate()
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptArchiveError(f"archive settings are malformed ({exc})") from None
