"""The ``.ncgs`` container: one self-describing file, no pickle.

Byte layout (little-endian):

======  =====================  ==================================================
offset  field                  meaning
======  =====================  ==================================================
0       8 bytes magic          ``b"\\x89NCGS\\r\\n\\x1a"``
8       u16 major, u16 minor   format version; a reader accepts its own major and
                               any minor
12      u32 flags              bit 0 (:data:`FLAG_HEADER_ZLIB`): the header is
                               zlib-compressed; other bits must be 0
16      u32 header length H    stored header bytes, at most :data:`MAX_HEADER_BYTES`
20      H bytes header         UTF-8 JSON: ``{"metadata": {...}, "sections": [...]}``,
                               zlib-compressed when flag bit 0 is set
20+H    u32 header CRC32       of the H stored header bytes
24+H    sections               back to back, in table order
======  =====================  ==================================================

Each section entry of the table is ``{"name", "offset", "length", "crc32", "info"}``;
``offset`` counts from the first section byte, ``info`` is free-form JSON (coder, symbol
count, shape...). A reader seeks to one section and checks its CRC32 without touching
the others, so one shape decodes without the rest. Every length is checked against the
real file size before anything is read, so a hostile header cannot make the reader
allocate more than the file holds; a compressed header is inflated to at most
:data:`MAX_HEADER_BYTES`.

Versions: 1.0 stores the header as plain JSON (flags 0). 1.1 writes it zlib-compressed
(flag bit 0), because with one record and one section entry per shape the plain JSON header
was a large share of a set's archive (docs/ARCHITECTURE.md, "The .ncgs archive"). 1.2 keeps this container and changes
what the mesh-set writer puts in it (:mod:`necgs.coding.codec_archive`): a binary shape table, one
feature section per batch, a model per decoder tensor. Readers of this version read all.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from necgs.errors import (
    BadMagicError,
    ChecksumError,
    CorruptArchiveError,
    TruncatedArchiveError,
    UnsupportedVersionError,
)

MAGIC = b"\x89NCGS\r\n\x1a"
MAJOR, MINOR = 1, 2
#: Flag bit: the JSON header is stored zlib-compressed (written from version 1.1 on).
FLAG_HEADER_ZLIB = 0x1
KNOWN_FLAGS = FLAG_HEADER_ZLIB
MAX_HEADER_BYTES = 16 * 1024**2
MAX_SECTIONS = 1_000_000
_PREFIX = struct.Struct("<8sHHII")


@dataclass
class Section:
    """A named binary section and its JSON-ready description."""

    name: str
    data: bytes
    info: dict = field(default_factory=dict)


def archive_bytes(metadata: dict, sections: list[Section], minor: int = MINOR, compress_header: bool = True) -> bytes:
    """Serialize an archive to bytes.

    Args:
        metadata: JSON-ready description stored in the header.
        sections: The binary sections, in file order.
        minor: Minor format version written.
        compress_header: zlib-compress the header (flag bit 0); False writes a 1.0-style header.
    """
    names = [s.name for s in sections]
    if len(set(names)) != len(names):
        raise ValueError("section names must be unique")
    table, offset = [], 0
    for s in sections:
        table.append(
            {"name": s.name, "offset": offset, "length": len(s.data), "crc32": zlib.crc32(s.data), "info": s.info}
        )
        offset += len(s.data)
    header = json.dumps({"metadata": metadata, "sections": table}, separators=(",", ":")).encode()
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError("archive header too large")
    flags = 0
    if compress_header:
        header, flags = zlib.compress(header, 9), FLAG_HEADER_ZLIB
    out = io.BytesIO()
    out.write(_PREFIX.pack(MAGIC, MAJOR, minor, flags, len(header)))
    out.write(header)
    out.write(struct.pack("<I", zlib.crc32(header)))
    for s in sections:
        out.write(s.data)
    return out.getvalue()


def write_archive(path: str | os.PathLike, metadata: dict, sections: list[Section], minor: int = MINOR) -> int:
    """Write an archive atomically (temporary file + rename); returns its size in bytes.

    Args:
        path: The file to write.
        metadata: JSON-ready description stored in the header.
        sections: The binary sections, in file order.
        minor: Minor format version written (an older layout's number when growing an old archive).
    """
    path = Path(path)
    blob = archive_bytes(metadata, sections, minor)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(blob)


@dataclass(frozen=True)
class SectionInfo:
    """Where a section lies and how to check it."""

    name: str
    offset: int
    length: int
    crc32: int
    info: dict


class ArchiveReader:
    """Random access to an archive's header and sections.

    Args:
        source: A path, or the archive's bytes.

    Raises:
        BadMagicError, UnsupportedVersionError, TruncatedArchiveError, ChecksumError,
        CorruptArchiveError: One per kind of damage, each naming the file.
    """

    def __init__(self, source: str | os.PathLike | bytes) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.name = "<bytes>"
            self._fh: BinaryIO = io.BytesIO(bytes(source))
            self.total_bytes = len(source)
        else:
            self.name = str(source)
            try:
                self._fh = open(source, "rb")
            except OSError as exc:
                raise CorruptArchiveError(f"{self.name}: cannot open ({exc.strerror})") from None
            self.total_bytes = os.fstat(self._fh.fileno()).st_size
        try:
            self._parse()
        except Exception:
            self.close()
            raise

    def _fail(self, kind: type[Exception], message: str) -> Exception:
        return kind(f"{self.name}: {message}")

    def _parse(self) -> None:
        prefix = self._fh.read(_PREFIX.size)
        if len(prefix) < 8 or prefix[:8] != MAGIC:
            raise self._fail(BadMagicError, "not a necgs archive (bad magic bytes)")
        if len(prefix) < _PREFIX.size:
            raise self._fail(TruncatedArchiveError, "truncated inside the fixed header")
        _, major, minor, self.flags, hlen = _PREFIX.unpack(prefix)
        if major != MAJOR:
            raise self._fail(
                UnsupportedVersionError,
                f"format version {major}.{minor} is not supported (this reader reads {MAJOR}.x)",
            )
        self.version = (major, minor)
        if self.flags & ~KNOWN_FLAGS:
            raise self._fail(UnsupportedVersionError, f"uses format flags 0x{self.flags:x} this reader does not know")
        if hlen > MAX_HEADER_BYTES:
            raise self._fail(CorruptArchiveError, f"header length {hlen} is implausible")
        if _PREFIX.size + hlen + 4 > self.total_bytes:
            raise self._fail(TruncatedArchiveError, "truncated inside the header")
        header = self._fh.read(hlen)
        (crc,) = struct.unpack("<I", self._fh.read(4))
        if zlib.crc32(header) != crc:
            raise self._fail(ChecksumError, "header checksum mismatch")
        self._data_start = _PREFIX.size + hlen + 4
        if self.flags & FLAG_HEADER_ZLIB:
            header = self._inflate(header)
        self._parse_header(header)

    def _inflate(self, stored: bytes) -> bytes:
        """Decompress a zlib header, refusing more than :data:`MAX_HEADER_BYTES`."""
        inflater = zlib.decompressobj()
        try:
            header = inflater.decompress(stored, MAX_HEADER_BYTES)
        except zlib.error:
            raise self._fail(CorruptArchiveError, "compressed header cannot be inflated") from None
        if inflater.unconsumed_tail:
            raise self._fail(CorruptArchiveError, f"header inflates past {MAX_HEADER_BYTES} bytes")
        if not inflater.eof or inflater.unused_data:
            raise self._fail(CorruptArchiveError, "compressed header is incomplete")
        return header

    def _parse_header(self, header: bytes) -> None:
        try:
            doc = json.loads(header.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise self._fail(CorruptArchiveError, "header is not valid JSON") from None
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("metadata"), dict)
            or not isinstance(doc.get("sections"), list)
        ):
            raise self._fail(CorruptArchiveError, "header lacks metadata or a section table")
        if len(doc["sections"]) > MAX_SECTIONS:
            raise self._fail(CorruptArchiveError, "too many sections")
        self.metadata: dict = doc["metadata"]
        self._sections: dict[str, SectionInfo] = {}
        end = 0
        for entry in doc["sections"]:
            info = self._section_entry(entry)
            if info.name in self._sections:
                raise self._fail(CorruptArchiveError, f"duplicate section {info.name!r}")
            if info.offset != end:
                raise self._fail(CorruptArchiveError, f"section {info.name!r} is not where the table says")
            end = info.offset + info.length
            self._sections[info.name] = info
        if self._data_start + end > self.total_bytes:
            raise self._fail(
                TruncatedArchiveError, f"file ends {self._data_start + end - self.total_bytes} bytes early"
            )
        if self._data_start + end < self.total_bytes:
            raise self._fail(CorruptArchiveError, "trailing bytes after the last section")

    def _section_entry(self, entry) -> SectionInfo:
        try:
            name, offset, length, crc = entry["name"], entry["offset"], entry["length"], entry["crc32"]
            info = entry.get("info", {})
        except (TypeError, KeyError):
            raise self._fail(CorruptArchiveError, "malformed section table entry") from None
        ints_ok = all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (offset, length, crc))
        if not isinstance(name, str) or not ints_ok or not isinstance(info, dict) or crc > 0xFFFFFFFF:
            raise self._fail(CorruptArchiveError, "malformed section table entry")
        return SectionInfo(name, offset, length, crc, info)

    def section_names(self) -> list[str]:
        """Names of all sections, in file order."""
        return list(self._sections)

    def section_info(self, name: str) -> SectionInfo:
        """Location and description of a section."""
        if name not in self._sections:
            raise self._fail(CorruptArchiveError, f"missing section {name!r}")
        return self._sections[name]

    def read_section(self, name: str) -> bytes:
        """The bytes of one section, CRC-checked."""
        info = self.section_info(name)
        self._fh.seek(self._data_start + info.offset)
        data = self._fh.read(info.length)
        if len(data) != info.length:
            raise self._fail(TruncatedArchiveError, f"section {name!r} is truncated")
        if zlib.crc32(data) != info.crc32:
            raise self._fail(ChecksumError, f"section {name!r} checksum mismatch")
        return data

    def close(self) -> None:
        """Close the underlying file."""
        self._fh.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
