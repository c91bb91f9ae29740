"""The ``.ncgs`` mesh-set archive layout: what is written where, and reading it back to symbols and tensors.

Archive contents of format 1.2 (see :mod:`necgs.coding.archive` for the container):

- metadata: format name and version, the stored settings (:meth:`necgs.config.NecgsConfig.to_dict`),
  the decoder architecture, the quantization grid of every decoder tensor and of the features,
  the batches (initial and each ``add``), and the rate the training estimated.
- section ``shapes``: one compact binary record per shape (:mod:`necgs.coding.shape_table`).
- section ``weights``: the decoder symbols, one chunk (model + payload) per tensor, or one
  chunk for all when one shared model is smaller (:mod:`necgs.coding.streams`).
- section ``features.model.<batch>``: the model shared by one batch's features (a Laplace
  per channel, or a categorical model, whichever is smaller).
- section ``features.<batch>``: varint byte lengths of the batch's shapes, then each
  shape's feature stream; one shape decodes from the weights, its batch's model and its
  own bytes.

Format 1.3 names a shared decoder (a prior) by id instead of holding ``weights``, and its
features may use the prior's feature model; 1.4 adds section ``delta``, a coded change of
that decoder. Formats 1.0 and 1.1 (JSON shape records, one ``weights`` stream, a
``feature.<i>`` section per shape) are still read, and grown in their own layout.

This room knows the layout only: where an archive's prior comes from is the caller's
``find_shared``, and rebuilding a decoder from the tensors is :mod:`necgs.compression`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np
import torch

from necgs import __version__
from necgs.coding.archive import MINOR, ArchiveReader, Section, write_archive
from necgs.coding.bit_estimate import codec_estimate_bytes
from necgs.coding.entropy import encode_with_model, shared_model
from necgs.coding.sections import feature_sections, read_weights, weight_sections
from necgs.coding.shape_table import pack_shapes, unpack_shapes
from necgs.coding.streams import AnyModel, decode_stream, model_from_bytes
from necgs.coding.varint import get_varints
from necgs.errors import ConfigError, CorruptArchiveError, NecgsError
from necgs.io.mesh import Mesh, Transform
from necgs.io.ply import binary_ply_bytes
from necgs.model.decoder import DecoderConfig
from necgs.model.quant import QuantizedTensor, QuantSpec

FORMAT = "necgs"
#: Minor version of archives that name a prior instead of holding a decoder (others stay 1.2).
PRIOR_MINOR = 3
#: Minor version of archives that hold a fine-tuned delta of their prior's decoder.
DELTA_MINOR = 4


class SharedDecoder(Protocol):
    """A decoder shared by many archives and named by id (:class:`necgs.priors.prior.Prior` is one)."""

    name: str
    decoder_cfg: DecoderConfig
    weights: dict[str, QuantizedTensor]
    feature_model: AnyModel

    @property
    def id(self) -> str:
        """Content hash of everything decoding depends on."""
        ...


class CodedDecoder(Protocol):
    """A decoder and features ready to be written (:class:`necgs.training.train.TrainedCodec` is one)."""

    decoder_cfg: DecoderConfig
    weights: dict[str, QuantizedTensor]
    features: QuantizedTensor
    seconds: float


SharedT = TypeVar("SharedT", bound=SharedDecoder)
ArchiveT = TypeVar("ArchiveT", bound="CodecArchive")
#: find_shared(wanted id, wanted name, archive label): the shared decoder an archive names.
FindShared = Callable[[str, str, str], SharedT]


# ---------------------------------------------------------------------------- writing
def shape_record(mesh: Mesh, transform: Transform, source_bytes: int, batch: int) -> dict:
    """The record of one shape in the archive's shape table (name, transform, counts, batch)."""
    return {
        "name": mesh.name,
        "transform": transform.to_dict(),
        "n_vertices": mesh.n_vertices,
        "n_faces": mesh.n_faces,
        "source_bytes": int(source_bytes),
        "ply_bytes": binary_ply_bytes(mesh),
        "batch": batch,
    }


def rate_estimate(codec: CodedDecoder) -> dict[str, float]:
    """The training rate term's estimate of the payload bytes, reported beside the real ones."""
    f = codec.features
    return codec_estimate_bytes(
        {n: (q.symbols, q.spec) for n, q in codec.weights.items()},
        f.symbols.reshape(f.shape[0], f.shape[1], -1),
        f.spec,
    )


def write_codec_archive(output: str | os.PathLike, settings: dict, codec: CodedDecoder, shapes: list[dict]) -> int:
    """Entropy-code a decoder and its features and write a format 1.2 archive; returns its size.

    Args:
        output: The archive path (written atomically).
        settings: The stored settings (:meth:`necgs.config.NecgsConfig.to_dict`); its ``coder`` codes the sections.
        codec: The quantized decoder and the (N, C, K', K', K') features of the shapes.
        shapes: One :func:`shape_record` per shape, in feature order.
    """
    coder = str(settings["coder"])
    wmeta, wsection = weight_sections(codec.weights, coder)
    fmeta, fsections = feature_sections(codec.features, 0, coder)
    metadata = {
        "format": FORMAT,
        "library_version": __version__,
        "config": settings,
        "decoder": codec.decoder_cfg.to_dict(),
        "weights": wmeta,
        "batches": [{"batch": 0, "mode": "initial", "features": fmeta}],
        "train_seconds": round(codec.seconds, 3),
        "rate_estimate": rate_estimate(codec),
    }
    return write_archive(output, metadata, [Section("shapes", pack_shapes(shapes)), wsection, *fsections])


def write_prior_archive(
    output: str | os.PathLike,
    prior: SharedDecoder,
    features: QuantizedTensor,
    shapes: list[dict],
    seconds: float,
    coder: str = "auto",
    delta: dict[str, QuantizedTensor] | None = None,
) -> int:
    """Write an archive that names ``prior`` by id instead of holding a decoder.

    Without ``delta`` it is format 1.3 and names the prior under ``"prior"``. With a decoder
    delta it is format 1.4: the prior is named under ``"prior_delta"`` (with the delta's
    description) and the delta is section ``delta``, so a 1.3 reader finds neither a prior
    nor a decoder and refuses the file instead of decoding it with the bare prior.

    The settings stored are only what decoding needs (deformation on, the coder); fitting more
    shapes (``add``) takes the prior's frame and :class:`~necgs.config.PriorFitConfig`.
    """
    fmeta, fsections = feature_sections(features, 0, coder, shared=prior.feature_model)
    ref = {"id": prior.id, "name": prior.name}
    sections = [Section("shapes", pack_shapes(shapes)), *fsections]
    if delta is not None:
        dmeta, dsection = weight_sections(delta, coder, name="delta")
        sections.append(dsection)
    metadata = {
        "format": FORMAT,
        "library_version": __version__,
        "config": {"deform": True, "coder": coder},
        "decoder": prior.decoder_cfg.to_dict(),
        **({"prior": ref} if delta is None else {"prior_delta": {**ref, "delta": dmeta}}),
        "batches": [{"batch": 0, "mode": "prior", "features": fmeta}],
        "train_seconds": round(seconds, 3),
    }
    return write_archive(output, metadata, sections, PRIOR_MINOR if delta is None else DELTA_MINOR)


@dataclass
class ArchiveContents:
    """An archive held in memory to be written again with more shapes (``add``).

    Attributes:
        metadata: Its metadata (a copy).
        sections: Every section, bytes as stored.
        shapes: Its shape records.
        compact: True for the 1.2+ layout, False for 1.0/1.1.
    """

    metadata: dict
    sections: list[Section]
    shapes: list[dict]
    compact: bool

    @property
    def next_batch(self) -> int:
        """The number of the batch added next."""
        return max(int(b["batch"]) for b in self.metadata["batches"]) + 1


def write_grown_archive(
    output: str | os.PathLike,
    old: ArchiveContents,
    records: list[dict],
    features: QuantizedTensor,
    coder: str,
    shared: AnyModel | None = None,
) -> int:
    """Write ``old`` with a new batch of shapes; the old sections are kept byte for byte.

    Args:
        output: The grown archive (may be the old one's path; written atomically).
        old: The archive grown.
        records: The new shapes' records (batch :attr:`ArchiveContents.next_batch`).
        features: Their quantized features, (M, C, K', K', K'), on the initial batch's grid.
        coder: The archive's coder.
        shared: The prior's feature model, for an archive compressed against a prior.

    Returns:
        The grown archive's size in bytes.
    """
    batch = old.next_batch
    metadata = dict(old.metadata)
    everyone = [*old.shapes, *records]
    if old.compact:
        fmeta, fsections = feature_sections(features, batch, coder, shared=shared)
        sections = [Section("shapes", pack_shapes(everyone)) if s.name == "shapes" else s for s in old.sections]
        minor = PRIOR_MINOR if "prior" in metadata else MINOR
    else:  # a 1.0/1.1 archive grows in its own layout, so its old shapes stay bit-identical
        fmeta, fsections = legacy_feature_sections(features, len(old.shapes), batch, coder)
        sections = list(old.sections)
        metadata["shapes"] = everyone
        minor = 1
    metadata["batches"] = [*metadata["batches"], {"batch": batch, "mode": "frozen-decoder", "features": fmeta}]
    return write_archive(output, metadata, [*sections, *fsections], minor)


def legacy_feature_sections(
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


# ---------------------------------------------------------------------------- reading
@dataclass
class CodecArchive(Generic[SharedT]):
    """An archive's parsed header with lazy access to its tensors (any format 1.0-1.4).

    Attributes:
        reader: The container.
        decoder_cfg: Decoder architecture.
        shapes: One record per shape (name, transform, counts, batch), whatever the format.
        deform: Whether the volumes carry the deformation channels.
        find_shared: Finds the shared decoder (prior) an archive names, when one is first needed.
    """

    reader: ArchiveReader
    decoder_cfg: DecoderConfig
    shapes: list[dict]
    deform: bool
    find_shared: FindShared[SharedT]
    _batches: dict = field(default_factory=dict, repr=False)
    _prior: SharedT | None = field(default=None, repr=False)

    @classmethod
    def open(cls: type[ArchiveT], path: str | os.PathLike | bytes, find_shared: FindShared[SharedT]) -> ArchiveT:
        """Open and validate an archive's header (sections are read lazily).

        Args:
            path: The archive (path or bytes).
            find_shared: How the prior an archive names is found (called once, when first needed).

        Raises:
            CorruptArchiveError: Not a mesh-set archive, or malformed metadata.
        """
        reader = ArchiveReader(path)
        try:
            meta = reader.metadata
            if meta.get("format") != FORMAT:
                raise CorruptArchiveError(f"{reader.name}: not a necgs mesh-set archive")
            decoder_cfg = DecoderConfig.from_dict(meta["decoder"])
            compact = "shapes" in reader.section_names()
            shapes = unpack_shapes(reader.read_section("shapes")) if compact else meta["shapes"]
            if not isinstance(shapes, list) or not all(isinstance(s, dict) for s in shapes):
                raise CorruptArchiveError(f"{reader.name}: malformed shape table")
            deform = bool(meta["config"].get("deform", True))
            return cls(reader, decoder_cfg, shapes, deform, find_shared)
        except (KeyError, TypeError, ValueError, ConfigError, AttributeError) as exc:
            reader.close()
            raise CorruptArchiveError(f"{reader.name}: malformed metadata ({type(exc).__name__}: {exc})") from None
        except Exception:
            reader.close()
            raise

    @property
    def metadata(self) -> dict:
        """The raw JSON metadata."""
        return self.reader.metadata

    @property
    def compact(self) -> bool:
        """True for the 1.2 layout (shape table, a feature section per batch, chunked weights)."""
        return "shapes" in self.reader.section_names()

    @property
    def prior_ref(self) -> dict | None:
        """``{"id", "name"}`` of the prior this archive was compressed against, if any."""
        ref = self.metadata.get("prior") or self.metadata.get("prior_delta")
        if ref is None:
            return None
        if not isinstance(ref, dict):
            raise CorruptArchiveError(f"{self.reader.name}: malformed prior reference")
        return {"id": ref.get("id"), "name": ref.get("name")}

    @property
    def has_delta(self) -> bool:
        """Whether the archive holds a fine-tuned delta of its prior's decoder (format 1.4)."""
        return "prior_delta" in self.metadata

    def delta(self) -> dict[str, QuantizedTensor]:
        """The decoder delta's quantized tensors (section ``delta``)."""
        return read_weights(self.reader, self.metadata["prior_delta"]["delta"], True, name="delta")

    def prior(self) -> SharedT | None:
        """The prior the archive needs (found by :attr:`find_shared`), or None."""
        ref = self.prior_ref
        if ref is None:
            return None
        if self._prior is None:
            self._prior = self.find_shared(str(ref.get("id")), str(ref.get("name")), self.reader.name)
            if self._prior.decoder_cfg.to_dict() != self.decoder_cfg.to_dict():
                raise CorruptArchiveError(f"{self.reader.name}: decoder description differs from its prior's")
        return self._prior

    def weights(self) -> dict[str, QuantizedTensor]:
        """Decode the decoder's quantized parameters (from the prior for an archive that names one)."""
        prior = self.prior()
        if prior is not None:
            return prior.weights
        return read_weights(self.reader, self.metadata["weights"], self.compact)

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
        model = self._feature_model(batch)
        symbols = decode_stream(self.feature_payload(index, batch), model, count)
        if symbols.size and symbols.max() >= QuantSpec.from_dict(bmeta["spec"]).levels:
            raise CorruptArchiveError(f"{self.reader.name}: feature {index} holds symbols outside its grid")
        return symbols

    def initial_features(self) -> QuantizedTensor:
        """Features of the shapes of the initial batch (their grid is reused for added shapes)."""
        bmeta = self.metadata["batches"][0]["features"]
        shape = tuple(int(x) for x in bmeta["shape"])
        first = [i for i, s in enumerate(self.shapes) if int(s["batch"]) == 0]
        symbols = np.concatenate([self.feature_symbols(i) for i in first])
        return QuantizedTensor(symbols, QuantSpec.from_dict(bmeta["spec"]), (len(first), *shape))

    def _feature_model(self, batch: int) -> AnyModel:
        """The model of batch ``batch``'s features: its own section's, or its prior's."""
        if self._batch(batch)["features"].get("model") == "prior":
            prior = self.prior()
            if prior is None:
                raise CorruptArchiveError(f"{self.reader.name}: batch {batch} uses a prior's model but names no prior")
            return prior.feature_model
        model, _ = model_from_bytes(self.reader.read_section(f"features.model.{batch}"))
        return model

    def feature_payload(self, index: int, batch: int) -> bytes:
        """The coded feature bytes of shape ``index`` (in batch ``batch``), without its model."""
        if not self.compact:
            return self.reader.read_section(f"feature.{index}")
        if batch not in self._batches:
            self._batches[batch] = self._split_batch(batch)
        members = [i for i, s in enumerate(self.shapes) if int(s["batch"]) == batch]
        return self._batches[batch][members.index(index)]

    def _split_batch(self, batch: int) -> list[bytes]:
        """The per-shape payloads of section ``features.<batch>``."""
        data = self.reader.read_section(f"features.{batch}")
        members = sum(1 for s in self.shapes if int(s["batch"]) == batch)
        if members > len(data) + 1:
            raise CorruptArchiveError(f"{self.reader.name}: features of batch {batch} are truncated")
        lengths, pos = get_varints(data, members, 0)
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

    def contents(self) -> ArchiveContents:
        """Every section and record in memory, to write the archive again with more shapes."""
        sections = [
            Section(n, self.reader.read_section(n), self.reader.section_info(n).info)
            for n in self.reader.section_names()
        ]
        return ArchiveContents(dict(self.metadata), sections, list(self.shapes), self.compact)

    def index_of(self, name: str) -> int:
        """Index of a shape by name."""
        for i, s in enumerate(self.shapes):
            if s["name"] == name:
                return i
        raise NecgsError(f"{self.reader.name}: no shape named {name!r}")

    def close(self) -> None:
        """Close the file."""
        self.reader.close()

    def __enter__(self: ArchiveT) -> ArchiveT:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
