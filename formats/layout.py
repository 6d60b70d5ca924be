"""Byte layout shared by archive format versions 1 and 2, the v1 record and index, and the index entry types.

formats/SPEC.md is the normative description; this module, ``layout2`` and the spec must change together.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import zstandard

from bbarc.errors import CorruptArchiveError, UsageError

# "\x89" catches 7-bit transports; "\r\n" changes length under either CRLF<->LF text-mode conversion.
MAGIC = b"BBARC\x89\r\n"
END_MAGIC = b"BBARCEND"
FORMAT_VERSION = 1  # what ArchiveWriter writes unless asked for another version
LATEST_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)

HEADER_FIXED = struct.Struct("<8sHI")  # magic, version, metadata length
CRC = struct.Struct("<I")
RECORD_BODY = struct.Struct("<4sIQQQI")  # v1: tag, chunk, first_item, item_count, length, payload crc32
RECORD_HEADER_SIZE = RECORD_BODY.size + CRC.size  # + crc32 of the 36 bytes before it
# v2: tag, number, first_item, item_count, descriptor length, side length, payload length, crc32 of descriptor,
# side and payload; followed by the crc32 of these 52 bytes.
RECORD2_BODY = struct.Struct("<4sIQQIIQIII")
RECORD2_HEADER_SIZE = RECORD2_BODY.size + CRC.size
TRAILER = struct.Struct("<QQII8s")  # index offset, index length, index crc32, version, end magic
RECORD_TAG = b"CHNK"
ATTACHMENT_TAG = b"ATCH"
CHECKSUM_PREFIX = "blake2b128:"

# Bound on the decompressed index: a free allowance plus a multiple of the file size. A real index holds a few
# hundred bytes of JSON per record, and every record takes at least 40 bytes of the file. The writer refuses to
# produce an index over the bound, so every archive it writes passes the reader's check.
INDEX_FREE_BYTES = 1 << 20
INDEX_BYTES_PER_FILE_BYTE = 32


def index_raw_limit(file_size: int) -> int:
    """Most bytes the decompressed index of a ``file_size``-byte archive may have."""
    return INDEX_FREE_BYTES + INDEX_BYTES_PER_FILE_BYTE * file_size


class ShapeRun(NamedTuple):
    """``count`` consecutive items of one ``shape``."""

    shape: tuple[int, ...]
    count: int


class SideSpec(NamedTuple):
    """One side array of a chunk: ``name``, numpy ``dtype`` string (e.g. ``"<i8"``), ``shape`` (first axis: items)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ChunkEntry:
    """One chunk in the index. ``offset`` is where its record header starts; ``length`` is the payload size.

    ``checksum``, ``raw_hash`` (and ``side_checksum``) are None and ``extra`` is empty for chunks found by a
    recovery scan. Version 1 entries have ``scheme = shapes = None`` and no ``side`` (v1 keeps side data inside
    the payload); version 2 entries have an empty ``extra``.
    """

    index: int
    offset: int
    length: int
    first_item: int
    item_count: int
    checksum: str | None
    raw_hash: str | None
    extra: dict = field(default_factory=dict, hash=False)
    version: int = 1
    scheme: str | None = None
    shapes: tuple[ShapeRun, ...] | None = None
    side: tuple[SideSpec, ...] = ()
    desc_length: int = 0
    side_length: int = 0
    side_checksum: str | None = None
    number: int | None = None  # the record's own chunk number, where a recovery scan skipped damaged records

    @property
    def record_number(self) -> int:
        """The chunk number its record header carries: ``index`` unless a scan found it past a gap."""
        return self.index if self.number is None else self.number

    @property
    def stop_item(self) -> int:
        """One past the last item of this chunk."""
        return self.first_item + self.item_count

    @property
    def side_offset(self) -> int:
        """Where the side section starts (version 2; for version 1 it is the payload offset)."""
        header = RECORD_HEADER_SIZE if self.version == 1 else RECORD2_HEADER_SIZE
        return self.offset + header + self.desc_length

    @property
    def payload_offset(self) -> int:
        return self.side_offset + self.side_length

    @property
    def record_end(self) -> int:
        return self.payload_offset + self.length

    def item_shape(self, k: int) -> tuple[int, ...] | None:
        """Shape of this chunk's ``k``-th item (0-based within the chunk), or None when not recorded (v1)."""
        if self.shapes is None:
            return None
        if not 0 <= k < self.item_count:
            raise UsageError(f"item {k} is out of range: chunk {self.index} holds {self.item_count} items")
        return self.shapes[bisect_right(self._run_starts, k) - 1].shape

    @cached_property
    def _run_starts(self) -> list[int]:
        starts, total = [], 0
        for run in self.shapes or ():
            starts.append(total)
            total += run.count
        return starts


@dataclass(frozen=True)
class AttachmentEntry:
    """One named attachment (version 2): ``length`` bytes stored verbatim after its record header."""

    index: int
    name: str
    offset: int
    length: int
    checksum: str | None
    desc_length: int
    number: int | None = None  # the record's own attachment number, where a recovery scan skipped some

    @property
    def record_number(self) -> int:
        return self.index if self.number is None else self.number

    @property
    def payload_offset(self) -> int:
        return self.offset + RECORD2_HEADER_SIZE + self.desc_length

    @property
    def record_end(self) -> int:
        return self.payload_offset + self.length


class RecordHeader(NamedTuple):
    chunk: int
    first_item: int
    item_count: int
    length: int
    payload_crc: int


def crc32(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def payload_checksum(data: bytes | memoryview) -> str:
    return CHECKSUM_PREFIX + hashlib.blake2b(data, digest_size=16).hexdigest()


def pack_index(index: dict) -> tuple[bytes, int]:
    """The index is zstd-compressed JSON: per-chunk keys repeat, so this keeps small chunks cheap.

    Returns the frame and the length of the JSON inside it (the frame declares it, see ``unpack_index``).
    """
    raw = encode_json(index, "chunk index")
    return zstandard.ZstdCompressor(level=19).compress(raw), len(raw)


def checked_frame(data: bytes, limit: int, what: str) -> bytes:
    """Decompress one zstd frame whose declared content size is at most ``limit``.

    The declared size is checked before decompressing: python-zstandard allocates what a frame declares and
    ignores ``max_output_size`` then. Frames without a declared size, or with bytes after the frame, are refused.
    """
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        raise CorruptArchiveError(f"{what} is not a zstd frame") from None
    if declared < 0:
        raise CorruptArchiveError(f"{what} does not declare its decompressed size")
    if declared > limit:
        raise CorruptArchiveError(f"{what} declares {declared} bytes, more than the {limit} this file allows")
    try:
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=limit, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CorruptArchiveError(f"{what} does not decompress ({exc})") from None
    if len(raw) != declared:
        raise CorruptArchiveError(f"{what} decompresses to {len(raw)} bytes but declares {declared}")
    return raw


def unpack_index(data: bytes, file_size: int) -> dict:
    return decode_json_object(checked_frame(data, index_raw_limit(file_size), "the chunk index"), "chunk index")


def encode_json(value: Any, what: str) -> bytes:
    """Strict JSON (no NaN/Infinity) as utf-8; UsageError names ``what`` when it cannot be encoded."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise UsageError(
            f"{what} cannot be stored as JSON ({exc}); use only dict/list/str/int/float/bool/None with str keys "
            "and finite floats, converting numpy values with int(), float() or .tolist()"
        ) from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not strict JSON")


def decode_json_object(data: bytes, what: str) -> dict:
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptArchiveError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CorruptArchiveError(f"{what} is not a JSON object")
    return value


def pack_header(metadata_json: bytes, version: int = FORMAT_VERSION) -> bytes:
    fixed = HEADER_FIXED.pack(MAGIC, version, len(metadata_json))
    return fixed + metadata_json + CRC.pack(crc32(metadata_json))


def pack_record_header(chunk: int, first_item: int, item_count: int, length: int, payload_crc: int) -> bytes:
    body = RECORD_BODY.pack(RECORD_TAG, chunk, first_item, item_count, length, payload_crc)
    return body + CRC.pack(crc32(body))


def parse_record_header(buf: bytes) -> RecordHeader:
    """Parse the 40-byte v1 record header; CorruptArchiveError if the tag or its own crc32 is wrong."""
    if len(buf) < RECORD_HEADER_SIZE:
        raise CorruptArchiveError("record header is cut short (file truncated)")
    tag, chunk, first_item, item_count, length, payload_crc = RECORD_BODY.unpack_from(buf)
    if tag != RECORD_TAG:
        raise CorruptArchiveError(f"record tag is {tag!r}, expected {RECORD_TAG!r}")
    (header_crc,) = CRC.unpack_from(buf, RECORD_BODY.size)
    if crc32(buf[: RECORD_BODY.size]) != header_crc:
        raise CorruptArchiveError("record header checksum mismatch")
    return RecordHeader(chunk, first_item, item_count, length, payload_crc)


def pack_trailer(index_offset: int, index_frame: bytes, version: int = FORMAT_VERSION) -> bytes:
    return TRAILER.pack(index_offset, len(index_frame), crc32(index_frame), version, END_MAGIC)


def entry_to_json(entry: ChunkEntry) -> dict:
    return {
        "chunk": entry.index,
        "offset": entry.offset,
        "length": entry.length,
        "first_item": entry.first_item,
        "item_count": entry.item_count,
        "checksum": entry.checksum,
        "raw_hash": entry.raw_hash,
        "extra": entry.extra,
    }


def is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def parse_index(index: dict, header_end: int, index_offset: int) -> tuple[list[ChunkEntry], dict]:
    """Validate a decoded v1 index against the file geometry; returns (entries, final)."""
    chunks, final = index.get("chunks"), index.get("final", {})
    if not isinstance(chunks, list) or not isinstance(final, dict):
        raise CorruptArchiveError("index lacks a 'chunks' list or its 'final' is not an object")
    entries: list[ChunkEntry] = []
    offset, next_item = header_end, 0
    for i, raw in enumerate(chunks):
        if not isinstance(raw, dict):
            raise CorruptArchiveError(f"index entry {i} is not an object")
        ints = [raw.get(k) for k in ("chunk", "offset", "length", "first_item", "item_count")]
        checksum, raw_hash, extra = raw.get("checksum"), raw.get("raw_hash"), raw.get("extra", {})
        if (
            not all(is_count(v) for v in ints)
            or not (isinstance(checksum, str) and checksum.startswith(CHECKSUM_PREFIX))
            or not (raw_hash is None or isinstance(raw_hash, str))
            or not isinstance(extra, dict)
        ):
            raise CorruptArchiveError(f"index entry {i} has missing or mistyped fields")
        entry = ChunkEntry(*ints, checksum=checksum, raw_hash=raw_hash, extra=extra)
        if entry.index != i or entry.offset != offset or entry.first_item != next_item or entry.item_count < 1:
            raise CorruptArchiveError(f"index entry {i} does not follow on from the entry before it")
        entries.append(entry)
        offset += RECORD_HEADER_SIZE + entry.length
        next_item += entry.item_count
    if offset != index_offset:
        raise CorruptArchiveError(f"index chunks end at byte {offset} but the index starts at byte {index_offset}")
    return entries, final
