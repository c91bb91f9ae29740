"""LEB128 varints: round trips and hostile input."""

import numpy as np
import pytest

from necgs.coding.varint import get_varints, put_varints
from necgs.errors import CorruptArchiveError


def test_varints_round_trip_and_take_one_byte_below_128():
    values = np.array([0, 1, 127, 128, 300, 2**31, 2**42 - 1])
    data = b"\x07" + put_varints(values)
    back, pos = get_varints(data, len(values), 1)
    assert back.tolist() == values.tolist() and pos == len(data)
    assert len(put_varints(np.array([0, 127]))) == 2 and len(put_varints(np.array([128]))) == 2


def test_truncated_or_overlong_varints_raise():
    with pytest.raises(CorruptArchiveError):
        get_varints(put_varints(np.array([300]))[:1], 1)
    with pytest.raises(CorruptArchiveError):
        get_varints(b"\xff" * 7 + b"\x01", 1)
