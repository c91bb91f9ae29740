"""Sections shared by every file that stores a decoder: mesh-set archives and priors.

A decoder's quantized tensors go into one section (a chunk per tensor, or one shared chunk
when that is smaller, :func:`weight_sections`) and are read back, checked against their
grids, by :func:`read_weights`. A batch of features is a model section plus one section of
per-shape streams (:func:`feature_sections`).
"""

from __future__ import annotations

import numpy as np

from necgs.coding.archive import ArchiveReader, Section
from necgs.coding.entropy import decode_symbols
from necgs.coding.streams import AnyModel, batch_feature_model, best_chunk, encode_stream, read_chunk, tensor_candidates
from necgs.coding.varint import put_varints
from necgs.errors import CorruptArchiveError
from necgs.model.quant import QuantizedTensor, QuantSpec


def weight_sections(weights: dict[str, QuantizedTensor], coder: str, name: str = "weights") -> tuple[dict, Section]:
    """The section of named quantized tensors: a chunk per tensor, or one shared chunk when smaller.

    Args:
        weights: Quantized tensors by name; their order is stored in the metadata.
        coder: "auto", a categorical coder name, or "laplace" (always a Laplace per tensor:
            exactly the models the rate term of training estimates).
        name: The section's name.

    Returns:
        The metadata that :func:`read_weights` needs, and the section.
    """
    names = list(weights)
    tensors = [weights[n] for n in names]
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
        "specs": {n: weights[n].spec.to_dict() for n in names},
        "shapes": {n: list(weights[n].shape) for n in names},
    }
    if joint is not None and len(joint) < len(per_tensor):
        info = {"layout": "joint", "coder": joint_model.coder, "count": int(symbols.size)}
        return meta, Section(name, joint, info)
    info = {
        "layout": "tensors",
        "coder": "per-tensor",
        "coders": [m.coder for m, _ in chunks],
        "count": int(symbols.size),
    }
    return meta, Section(name, per_tensor, info)


def bounded_count(value, reader: ArchiveReader, name: str) -> int:
    """A section's announced symbol count, refused when the file cannot hold that many."""
    if not isinstance(value, int) or value < 0 or value > 64 * reader.total_bytes + 1024:
        raise CorruptArchiveError(f"{reader.name}: section {name!r} announces an implausible symbol count")
    return value


def read_weights(
    reader: ArchiveReader, meta: dict, compact: bool = True, name: str = "weights"
) -> dict[str, QuantizedTensor]:
    """Decode the tensors of section ``name`` described by ``meta`` (from :func:`weight_sections`).

    Args:
        reader: The open container.
        meta: The tensors' order, grids and shapes.
        compact: False for format 1.0/1.1 archives (one plain symbol stream).
        name: The section's name.

    Raises:
        CorruptArchiveError: Counts, trailing bytes or symbols do not match the description.
    """
    info = reader.section_info(name).info
    count = bounded_count(info.get("count"), reader, name)
    data = reader.read_section(name)
    shapes = {n: tuple(int(x) for x in meta["shapes"][n]) for n in meta["order"]}
    sizes = [int(np.prod(shape)) for shape in shapes.values()]
    if sum(sizes) != count:
        raise CorruptArchiveError(f"{reader.name}: {name} section does not match the decoder")
    if compact and info.get("layout") == "tensors":
        pieces, pos = [], 0
        for n in sizes:
            symbols, _, pos = read_chunk(data, pos, n)
            pieces.append(symbols)
        if pos != len(data):
            raise CorruptArchiveError(f"{reader.name}: {name} section has trailing bytes")
        symbols = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    elif compact:
        symbols, _, pos = read_chunk(data, 0, count)
        if pos != len(data):
            raise CorruptArchiveError(f"{reader.name}: {name} section has trailing bytes")
    else:
        symbols = decode_symbols(data, count)
    out, pos = {}, 0
    for (tensor, shape), n in zip(shapes.items(), sizes):
        spec = QuantSpec.from_dict(meta["specs"][tensor])
        piece = symbols[pos : pos + n]
        if piece.size and (piece.min() < 0 or piece.max() >= spec.levels):
            raise CorruptArchiveError(f"{reader.name}: tensor {tensor} holds symbols outside its grid")
        out[tensor] = QuantizedTensor(piece, spec, shape)
        pos += n
    return out


def feature_model(features: QuantizedTensor, coder: str) -> AnyModel:
    """The model shared by a batch of features that codes them in the fewest bytes."""
    m, c = features.shape[0], features.shape[1]
    streams = features.symbols.reshape(m, c, -1)
    return batch_feature_model(streams, features.spec.bits, coder)


def feature_payload(features: QuantizedTensor, model: AnyModel) -> bytes:
    """Varint byte lengths of the shapes' streams, then each shape's stream under ``model``."""
    m = features.shape[0]
    payloads = [encode_stream(s, model) for s in features.symbols.reshape(m, -1)]
    return put_varints(np.array([len(p) for p in payloads], dtype=np.int64)) + b"".join(payloads)


def feature_sections(
    features: QuantizedTensor, batch: int, coder: str, shared: AnyModel | None = None
) -> tuple[dict, list[Section]]:
    """Sections ``features.model.<batch>`` and ``features.<batch>`` of one batch's features.

    Args:
        features: The batch's quantized features, shape (M, C, K', K', K').
        batch: The batch number.
        coder: As in :func:`weight_sections`.
        shared: A model the reader already has (a prior's feature model). It is used, and no
            model section written, when that makes the batch smaller; the metadata then says
            ``"model": "prior"``.
    """
    per_shape = int(np.prod(features.shape[1:]))
    meta = {"spec": features.spec.to_dict(), "shape": list(features.shape[1:])}
    own = feature_model(features, coder)
    body = feature_payload(features, own)
    info = {"count": per_shape, "shapes": features.shape[0]}
    if shared is not None:
        try:
            body_shared = feature_payload(features, shared)
        except ValueError:  # a categorical model that never saw one of these symbols
            body_shared = None
        if body_shared is not None and len(body_shared) <= len(body) + len(own.to_bytes()):
            return {**meta, "model": "prior"}, [Section(f"features.{batch}", body_shared, info)]
    sections = [
        Section(f"features.model.{batch}", own.to_bytes(), {"coder": own.coder}),
        Section(f"features.{batch}", body, info),
    ]
    return meta, sections
