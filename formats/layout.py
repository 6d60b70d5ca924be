"""Byte layout of archive format v1: constants, packers/parsers and the index entry type.

formats/SPEC.md is the normative description; this module and the spec must change together.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import zstandard

from bbarc.errors import CorruptArchiveError, UsageError

# "\x89" catches 7-bit transports; "\r\n" changes length under either CRLF<->LF text-mode conversion.
MAGIC = b"BBARC\x89\r\n"
END_MAGIC = b"BBARCEND"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

HEADER_FIXED = struct.Struct("<8sHI")  # magic, version, metadata length
CRC = struct.Struct("<I")
RECORD_BODY = struct.Struct("<4sIQQQI")  # tag, chunk, first_item, item_count, length, payload crc32
RECORD_HEADER_SIZE = RECORD_BODY.size + CRC.size  # + crc32 of the 36 bytes before it
TRAILER = struct.Struct("<QQII8s")  # index offset, index length, index crc32, version, end magic
RECORD_TAG = b"CHNK"
CHECKSUM_PREFIX = "blake2b128:"


@dataclass(frozen=True)
class ChunkEntry:
    """One chunk in the index. ``offset`` is where its record header starts; ``length`` is the payload size.

    ``checksum``, ``raw_hash`` are None and ``extra`` is empty for chunks found by a recovery scan.
    """

    index: int
    offset: int
    length: int
    first_item: int
    item_count: int
    checksum: str | None
    raw_hash: str | None
    extra: dict = field(default_factory=dict, hash=False)

    @property
    def stop_item(self) -> int:
        """One past the last item of this chunk."""
        return self.first_item + self.item_count


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


def pack_index(index: dict) -> bytes:
    """The index is zstd-compressed JSON: per-chunk keys repeat, so this keeps small chunks cheap."""
    return zstandard.ZstdCompressor(level=19).compress(encode_json(index, "chunk index"))


def unpack_index(data: bytes) -> dict:
    try:
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31)
    except zstandard.ZstdError as exc:
        raise CorruptArchiveError(f"the chunk index does not decompress ({exc})") from None
    return decode_json_object(raw, "chunk index")


def encode_json(value: Any, what: str) -> bytes:
    """Strict JSON (no NaN/Infinity) as utf-8; UsageError names ``what`` when it cannot be encoded."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"{what} cannot be stored as JSON ({exc}); use only dict/list/str/int/float/bool/None with str keys "
            "and finite floats, converting numpy values with int(), float() or .tolist()"
        ) from None


def decode_json_object(data: bytes, what: str) -> dict:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptArchiveError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CorruptArchiveError(f"{what} is not a JSON object")
    return value


def pack_header(metadata_json: bytes) -> bytes:
    return HEADER_FIXED.pack(MAGIC, FORMAT_VERSION, len(metadata_json)) + metadata_json + CRC.pack(crc32(metadata_json))


def pack_record_header(chunk: int, first_item: int, item_count: int, length: int, payload_crc: int) -> bytes:
    body = RECORD_BODY.pack(RECORD_TAG, chunk, first_item, item_count, length, payload_crc)
    return body + CRC.pack(crc32(body))


def parse_record_header(buf: bytes) -> RecordHeader:
    """Parse the 40-byte record header; CorruptArchiveError if the tag or its own crc32 is wrong."""
    if len(buf) < RECORD_HEADER_SIZE:
        raise CorruptArchiveError("record header is cut short (file truncated)")
    tag, chunk, first_item, item_count, length, payload_crc = RECORD_BODY.unpack_from(buf)
    if tag != RECORD_TAG:
        raise CorruptArchiveError(f"record tag is {tag!r}, expected {RECORD_TAG!r}")
    (header_crc,) = CRC.unpack_from(buf, RECORD_BODY.size)
    if crc32(buf[: RECORD_BODY.size]) != header_crc:
        raise CorruptArchiveError("record header checksum mismatch")
    return RecordHeader(chunk, first_item, item_count, length, payload_crc)


def pack_trailer(index_offset: int, index_json: bytes) -> bytes:
    return TRAILER.pack(index_offset, len(index_json), crc32(index_json), FORMAT_VERSION, END_MAGIC)


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


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def parse_index(index: dict, header_end: int, index_offset: int) -> tuple[list[ChunkEntry], dict]:
    """Validate the decoded index JSON against the file geometry; returns (entries, final)."""
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
            not all(_is_count(v) for v in ints)
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
