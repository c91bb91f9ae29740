"""The compact per-shape table of format 1.2 (the ``shapes`` section).

Layout (varints are LEB128, unsigned)::

    varint n
    n records: varint shared   bytes of the name shared with the previous name (front coding)
               varint length   bytes of the rest of the name, then those UTF-8 bytes
               4 x float32     transform: centre x, y, z and scale
               varint n_vertices, varint n_faces, varint source_bytes, varint batch

1.1 stored the same record as JSON (float64 reprs, repeated names and keys, a
``ply_bytes`` that follows from the counts); this binary record is a fraction of that
size, most of all where names share their start (AMA: ``crane/mesh_0012``; measurements:
docs/ARCHITECTURE.md, "The .ncgs archive", and benchmarks/README.md, "Rate: archive 1.2, the
rate term, 5 bits, rate control"). Decoding
is bounded by the section length, so a hostile count cannot allocate more than the file.
"""

from __future__ import annotations

import struct

import numpy as np

from necgs.coding.varint import get_varints, put_varints
from necgs.errors import CorruptArchiveError
from necgs.io.ply import ply_size

_FLOATS = struct.Struct("<4f")
#: Integer fields after the transform, in order.
_COUNTS = ("n_vertices", "n_faces", "source_bytes", "batch")


def _shared_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def pack_shapes(records: list[dict]) -> bytes:
    """Serialize shape records (name, transform {center, scale}, counts, batch)."""
    out = bytearray(put_varints(np.array([len(records)])))
    prev = b""
    for r in records:
        name = str(r["name"]).encode("utf-8")
        shared = _shared_prefix(prev, name)
        out += put_varints(np.array([shared, len(name) - shared])) + name[shared:]
        t = r["transform"]
        out += _FLOATS.pack(*(float(c) for c in t["center"]), float(t["scale"]))
        out += put_varints(np.array([int(r.get(k, 0)) for k in _COUNTS]))
        prev = name
    return bytes(out)


def unpack_shapes(data: bytes) -> list[dict]:
    """Inverse of :func:`pack_shapes`; records get ``ply_bytes`` recomputed from the counts.

    Raises:
        CorruptArchiveError: Anything truncated or inconsistent.
    """
    (n,), pos = get_varints(data, 1, 0)
    if n > len(data):  # every record takes more than one byte
        raise CorruptArchiveError("shape table announces more shapes than it holds")
    records, prev = [], b""
    for _ in range(int(n)):
        (shared, rest), pos = get_varints(data, 2, pos)
        if shared > len(prev) or pos + rest + _FLOATS.size > len(data):
            raise CorruptArchiveError("shape table is truncated or malformed")
        name = prev[:shared] + data[pos : pos + rest]
        pos += int(rest)
        cx, cy, cz, scale = _FLOATS.unpack_from(data, pos)
        pos += _FLOATS.size
        counts, pos = get_varints(data, len(_COUNTS), pos)
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptArchiveError("shape table holds a name that is not UTF-8") from None
        record = {"name": text, "transform": {"center": [cx, cy, cz], "scale": scale}}
        record.update({k: int(v) for k, v in zip(_COUNTS, counts)})
        record["ply_bytes"] = ply_size(record["n_vertices"], record["n_faces"])
        records.append(record)
        prev = name
    if pos != len(data):
        raise CorruptArchiveError("shape table has trailing bytes")
    return records
