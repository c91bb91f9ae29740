"""The .ncgs container: layout, atomic writes, one error type per kind of damage."""

import json
import struct
import zlib

import pytest

from necgs.coding import archive as ar
from necgs.coding.archive import ArchiveReader, Section, archive_bytes, write_archive
from necgs.errors import (
    ArchiveError,
    BadMagicError,
    ChecksumError,
    CorruptArchiveError,
    TruncatedArchiveError,
    UnsupportedVersionError,
)


@pytest.fixture
def blob():
    return archive_bytes({"k": [1, 2]}, [Section("a", b"hello", {"x": 1}), Section("b", bytes(range(50)))])


def test_round_trip_and_random_access(blob, tmp_path):
    path = tmp_path / "x.ncgs"
    assert write_archive(
        path, {"k": [1, 2]}, [Section("a", b"hello", {"x": 1}), Section("b", bytes(range(50)))]
    ) == len(blob)
    with ArchiveReader(path) as r:
        assert r.metadata == {"k": [1, 2]} and r.section_names() == ["a", "b"]
        assert r.read_section("b") == bytes(range(50)) and r.section_info("a").info == {"x": 1}
        assert r.version == (ar.MAJOR, ar.MINOR)


def test_each_damage_has_its_own_error(blob):
    with pytest.raises(BadMagicError):
        ArchiveReader(b"PK\x03\x04" + blob[4:])
    bumped = bytearray(blob)
    struct.pack_into("<H", bumped, 8, ar.MAJOR + 1)
    with pytest.raises(UnsupportedVersionError):
        ArchiveReader(bytes(bumped))
    with pytest.raises(TruncatedArchiveError):
        ArchiveReader(blob[:-3])
    flipped = bytearray(blob)
    flipped[-1] ^= 0x40
    with pytest.raises(ChecksumError):
        ArchiveReader(bytes(flipped)).read_section("b")
    header_flip = bytearray(blob)
    header_flip[25] ^= 0x01
    with pytest.raises(ChecksumError):
        ArchiveReader(bytes(header_flip))
    with pytest.raises(CorruptArchiveError):
        ArchiveReader(blob + b"junk")


def test_newer_minor_version_is_readable(blob):
    newer = bytearray(blob)
    struct.pack_into("<H", newer, 10, ar.MINOR + 3)
    assert ArchiveReader(bytes(newer)).read_section("a") == b"hello"


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "set.ncgs"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ar.os, "fsync", boom)
    with pytest.raises(OSError):
        write_archive(path, {}, [Section("a", b"x" * 1000)])
    assert not path.exists() and not list(tmp_path.iterdir())


def test_truncation_at_every_byte_and_bit_flips_raise_only_archive_errors(blob):
    for n in range(len(blob)):
        with pytest.raises(ArchiveError):
            ArchiveReader(blob[:n])
    for i in range(len(blob)):
        for bit in (0, 7):
            damaged = bytearray(blob)
            damaged[i] ^= 1 << bit
            try:
                r = ArchiveReader(bytes(damaged))
                for name in r.section_names():
                    r.read_section(name)
            except ArchiveError:
                pass


def _with_header(stored: bytes, flags: int) -> bytes:
    """An archive with no sections whose stored header bytes are ``stored``."""
    return (
        struct.pack("<8sHHII", ar.MAGIC, ar.MAJOR, ar.MINOR, flags, len(stored))
        + stored
        + struct.pack("<I", zlib.crc32(stored))
    )


def test_header_is_compressed_and_plain_headers_still_read():
    meta = {"shapes": [{"name": f"crane/mesh_{i:04d}", "n_faces": 20000} for i in range(88)]}
    sections = [Section(f"feature.{i}", bytes([i]) * 7, {"batch": 0, "count": 512}) for i in range(88)]
    packed = archive_bytes(meta, sections)
    plain = archive_bytes(meta, sections, minor=0, compress_header=False)
    assert len(packed) < len(plain) // 4
    for blob in (packed, plain):
        r = ArchiveReader(blob)
        assert r.metadata == meta and r.read_section("feature.87") == bytes([87]) * 7
    assert ArchiveReader(packed).flags == ar.FLAG_HEADER_ZLIB and ArchiveReader(plain).version == (ar.MAJOR, 0)


def test_unknown_flags_bad_and_bomb_headers_are_refused():
    header = json.dumps({"metadata": {}, "sections": []}).encode()
    with pytest.raises(UnsupportedVersionError, match="flags 0x4"):
        ArchiveReader(_with_header(header, 0x4))
    with pytest.raises(CorruptArchiveError, match="cannot be inflated"):
        ArchiveReader(_with_header(b"not zlib at all", ar.FLAG_HEADER_ZLIB))
    with pytest.raises(CorruptArchiveError, match="incomplete"):
        ArchiveReader(_with_header(zlib.compress(header)[:-6], ar.FLAG_HEADER_ZLIB))
    bomb = zlib.compress(b'{"metadata":{"pad":"' + b"x" * (ar.MAX_HEADER_BYTES + 10) + b'"},"sections":[]}', 9)
    assert len(bomb) < 100_000
    with pytest.raises(CorruptArchiveError, match="inflates past"):
        ArchiveReader(_with_header(bomb, ar.FLAG_HEADER_ZLIB))
