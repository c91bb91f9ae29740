"""Unsigned LEB128 varints: the integers of entropy models, chunk lengths and the shape table.

Each value is written 7 bits at a time, lowest first, with the high bit of a byte set while
more bytes follow; values below 128 take one byte.
"""

from __future__ import annotations

import numpy as np

from necgs.errors import CorruptArchiveError

#: Longest varint read, in 7-bit groups' shift: values up to 2^42 - 1.
_MAX_SHIFT = 35


def put_varints(values: np.ndarray) -> bytes:
    """Serialize non-negative integers as consecutive varints.

    Args:
        values: (n,) non-negative integers.

    Returns:
        The varints, back to back.
    """
    out = bytearray()
    for v in values.tolist():
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def get_varints(data: bytes, count: int, pos: int = 0) -> tuple[np.ndarray, int]:
    """Read ``count`` varints starting at byte ``pos``.

    Args:
        data: The bytes to read from.
        count: How many varints to read.
        pos: Offset of the first one.

    Returns:
        The (count,) int64 values and the offset just past the last one.

    Raises:
        CorruptArchiveError: The data ends inside a varint or one is longer than 6 bytes.
    """
    values = []
    for _ in range(count):
        v, shift = 0, 0
        while True:
            if pos >= len(data) or shift > _MAX_SHIFT:
                raise CorruptArchiveError("a varint is truncated or malformed")
            b = data[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        values.append(v)
    return np.array(values, dtype=np.int64), pos
