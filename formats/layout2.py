"""Format version 2: record headers, record descriptors, side sections and the typed index (see SPEC.md).

Every function that parses bytes from a file raises CorruptArchiveError; the ones that take a writer's
arguments raise UsageError. The checks are the same, so a writer cannot produce what a reader rejects.
"""

from __future__ import annotations

import functools
import math
import re
import reprlib
from typing import Any, NamedTuple

import numpy as np
import zstandard

from bbarc.errors import CorruptArchiveError, UsageError

from .layout import ATTACHMENT_TAG, CRC, RECORD2_BODY, RECORD_TAG, ShapeRun, SideSpec, checked_frame, crc32

TAGS = (RECORD_TAG, ATTACHMENT_TAG)  # the record kinds of version 2, as a recovery scan looks for them

# Bounds on everything a v2 record or index entry declares (SPEC.md, "Bounds").
DESC_MAX = 1 << 20  # bytes of one record descriptor
SIDE_RAW_MAX = 16 << 20  # decompressed side bytes of one chunk
SIDE_MAX_ARRAYS = 64
SIDE_NAME_MAX = 64  # characters
ATTACHMENT_NAME_MAX = 128  # characters
MAX_ATTACHMENTS = 1024
MAX_NDIM = 32
MAX_DIM = (1 << 32) - 1
MAX_ITEM_ELEMENTS = 1 << 48
MAX_ITEMS = 1 << 48  # items in an archive (so first_item + item_count fits every int64)
SCHEME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
SCHEME_BITS_BACK = "bits-back"  # bbarc's values (SPEC.md); the container only checks the syntax
SCHEME_STORED = "stored"
_SIZED = [f"{order}{kind}{size}" for order in "<>" for kind in "iuf" for size in (2, 4, 8)]
SIDE_DTYPES = frozenset(["|b1", "|i1", "|u1", *_SIZED])


class Record2Header(NamedTuple):
    tag: bytes
    number: int
    first_item: int
    item_count: int
    desc_length: int
    side_length: int
    length: int
    desc_crc: int
    side_crc: int
    payload_crc: int


# -- record headers -------------------------------------------------------------------------------


def pack_record_header(tag: bytes, number: int, first_item: int, item_count: int, desc: bytes, side: bytes,
                       payload_length: int, payload_crc: int) -> bytes:
    body = RECORD2_BODY.pack(tag, number, first_item, item_count, len(desc), len(side), payload_length,
                             crc32(desc), crc32(side), payload_crc)
    return body + CRC.pack(crc32(body))


def parse_record_header(buf: bytes) -> Record2Header:
    """The 56-byte v2 record header, its tag, own crc32 and declared sizes checked (not yet against the file)."""
    if len(buf) < RECORD2_BODY.size + CRC.size:
        raise CorruptArchiveError("record header is cut short (file truncated)")
    header = Record2Header(*RECORD2_BODY.unpack_from(buf))
    if header.tag not in (RECORD_TAG, ATTACHMENT_TAG):
        raise CorruptArchiveError(f"record tag is {header.tag!r}, expected {RECORD_TAG!r} or {ATTACHMENT_TAG!r}")
    (header_crc,) = CRC.unpack_from(buf, RECORD2_BODY.size)
    if crc32(buf[: RECORD2_BODY.size]) != header_crc:
        raise CorruptArchiveError("record header checksum mismatch")
    if not 1 <= header.desc_length <= DESC_MAX:
        raise CorruptArchiveError(f"record descriptor length {header.desc_length} is outside 1..{DESC_MAX}")
    if header.tag == RECORD_TAG and not 1 <= header.item_count <= MAX_ITEMS - header.first_item:
        raise CorruptArchiveError(f"record holds {header.item_count} items from item {header.first_item}")
    if header.tag == ATTACHMENT_TAG and (header.first_item or header.item_count or header.side_length):
        raise CorruptArchiveError("attachment record declares items or side data")
    return header


# -- descriptors: LEB128 varints and length-prefixed strings --------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _varint(len(data)) + data


class _Cursor:
    """Reads a descriptor; every overrun or malformed value is a CorruptArchiveError."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= len(self.data) or shift > 63:
                raise CorruptArchiveError("record descriptor has a cut or over-long number")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                if byte == 0 and shift > 7:
                    raise CorruptArchiveError("record descriptor has a non-minimal number")
                if value >= 1 << 64:
                    raise CorruptArchiveError("record descriptor has a number over 64 bits")
                return value

    def string(self, limit: int) -> str:
        length = self.varint()
        if length > limit or self.pos + length > len(self.data):
            raise CorruptArchiveError("record descriptor has a string that is too long or cut")
        raw = self.data[self.pos:self.pos + length]
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptArchiveError("record descriptor has a string that is not UTF-8") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise CorruptArchiveError(f"record descriptor has {len(self.data) - self.pos} bytes after its end")


@functools.lru_cache(maxsize=256)  # readers re-encode the index's fields on every read; chunks share them
def encode_chunk_desc(scheme: str, shapes: tuple[ShapeRun, ...], side: tuple[SideSpec, ...]) -> bytes:
    parts = [_string(scheme), _varint(len(shapes))]
    for shape, count in shapes:
        parts += [_varint(len(shape)), *map(_varint, shape), _varint(count)]
    parts.append(_varint(len(side)))
    for name, dtype, shape in side:
        parts += [_string(name), _string(dtype), _varint(len(shape)), *map(_varint, shape)]
    return b"".join(parts)


def decode_chunk_desc(data: bytes, item_count: int) -> tuple[str, tuple[ShapeRun, ...], tuple[SideSpec, ...]]:
    cur = _Cursor(data)
    scheme = cur.string(64)
    runs = []
    for _ in range(_bounded(cur.varint(), item_count, "shape runs")):
        shape = tuple(cur.varint() for _ in range(_bounded(cur.varint(), MAX_NDIM, "dimensions")))
        runs.append((shape, cur.varint()))
    side = []
    for _ in range(_bounded(cur.varint(), SIDE_MAX_ARRAYS, "side arrays")):
        name, dtype = cur.string(4 * SIDE_NAME_MAX), cur.string(8)
        side.append((name, dtype, tuple(cur.varint() for _ in range(_bounded(cur.varint(), MAX_NDIM, "dims")))))
    cur.end()
    return chunk_fields(scheme, runs, side, item_count, CorruptArchiveError)


def encode_attachment_desc(name: str) -> bytes:
    return _string(name)


def decode_attachment_desc(data: bytes) -> str:
    cur = _Cursor(data)
    name = cur.string(4 * ATTACHMENT_NAME_MAX)
    cur.end()
    return check_attachment_name(name, CorruptArchiveError)


def _bounded(value: int, limit: int, what: str) -> int:
    if value > limit:
        raise CorruptArchiveError(f"record descriptor declares {value} {what}, more than {limit}")
    return value


# -- field checks shared by writer (UsageError) and reader (CorruptArchiveError) --------------------


def _printable_name(name: Any, limit: int, what: str, error: type) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= limit or not name.isprintable():
        raise error(f"{what} must be a printable string of 1 to {limit} characters, got {_shown(name)}")
    return name


_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxlevel = 60, 60, 6, 6, 3


def _shown(value: Any) -> str:
    """A short repr for messages: bounded however large the value, and repr escapes non-printable characters."""
    return _SHORT.repr(value)


def check_attachment_name(name: Any, error: type) -> str:
    return _printable_name(name, ATTACHMENT_NAME_MAX, "an attachment name", error)


def check_scheme(scheme: Any, error: type) -> str:
    if not isinstance(scheme, str) or SCHEME_PATTERN.fullmatch(scheme) is None:
        raise error(f"scheme must be 1 to 32 characters of a-z 0-9 . _ - (starting a-z 0-9), got {_shown(scheme)}")
    return scheme


def check_shape(shape: Any, error: type, what: str = "shape") -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)) or len(shape) > MAX_NDIM:
        raise error(f"{what} must be a sequence of at most {MAX_NDIM} ints, got {_shown(shape)}")
    dims = tuple(_int(n) for n in shape)
    if not all(d is not None and 0 <= d <= MAX_DIM for d in dims) or math.prod(dims) > MAX_ITEM_ELEMENTS:
        raise error(f"{what} {_shown(shape)} needs sizes in 0..{MAX_DIM} and at most 2^48 elements")
    return dims


def _int(value: Any) -> int | None:
    if type(value) is int:
        return value
    return int(value) if isinstance(value, np.integer) else None


def chunk_fields(scheme: Any, runs: Any, side: Any, item_count: int, error: type):
    """Typed (scheme, shape runs, side specs) of a chunk of ``item_count`` items, or ``error``."""
    scheme = check_scheme(scheme, error)
    if not isinstance(runs, (tuple, list)) or not 1 <= len(runs) <= item_count:
        raise error(f"a chunk of {item_count} items needs 1 to {item_count} shape runs, got {_shown(runs)}")
    typed = []
    for run in runs:
        if not isinstance(run, (tuple, list)) or len(run) != 2:
            raise error(f"a shape run is a (shape, count) pair, got {_shown(run)}")
        count = _int(run[1])
        if count is None or count < 1:
            raise error(f"a shape run's count must be an int >= 1, got {_shown(run[1])}")
        typed.append(ShapeRun(check_shape(run[0], error), count))
    if sum(r.count for r in typed) != item_count:
        raise error(f"shape runs count {sum(r.count for r in typed)} items but the chunk holds {item_count}")
    if not isinstance(side, (tuple, list)) or len(side) > SIDE_MAX_ARRAYS:
        raise error(f"side data is a list of at most {SIDE_MAX_ARRAYS} (name, dtype, shape), got {_shown(side)}")
    specs, total = [], 0
    for spec in side:
        if not isinstance(spec, (tuple, list)) or len(spec) != 3:
            raise error(f"a side array is described by (name, dtype, shape), got {_shown(spec)}")
        name = _printable_name(spec[0], SIDE_NAME_MAX, "a side array name", error)
        if spec[1] not in SIDE_DTYPES:
            raise error(f"side array {name!r} has dtype {_shown(spec[1])}; allowed: bool, integers, floats")
        shape = check_shape(spec[2], error, f"side array {name!r} shape")
        if not shape or shape[0] != item_count:
            raise error(f"side array {name!r} has shape {shape}; its first axis must count the {item_count} items")
        total += math.prod(shape) * np.dtype(spec[1]).itemsize
        specs.append(SideSpec(name, spec[1], shape))
    if len({s.name for s in specs}) != len(specs):
        raise error("side array names must be unique within a chunk")
    if total > SIDE_RAW_MAX:
        raise error(f"side arrays of one chunk hold {total} bytes, more than {SIDE_RAW_MAX}")
    return scheme, tuple(typed), tuple(specs)


# -- writer input ----------------------------------------------------------------------------------


def shape_runs(item_shapes: Any, item_count: int) -> Any:
    """A writer's ``item_shapes`` as runs: one shape (a sequence of ints) for every item, or (shape, count) runs."""
    if isinstance(item_shapes, (tuple, list)) and all(_int(d) is not None for d in item_shapes):
        return [(item_shapes, item_count)]
    return item_shapes  # checked by chunk_fields


def merge_runs(runs: tuple[ShapeRun, ...]) -> tuple[ShapeRun, ...]:
    """Adjacent runs of one shape merged, so chunks of equal shapes always get equal descriptors."""
    merged: list[ShapeRun] = []
    for run in runs:
        if merged and merged[-1].shape == run.shape:
            merged[-1] = ShapeRun(run.shape, merged[-1].count + run.count)
        else:
            merged.append(run)
    return tuple(merged)


def side_arrays(side: Any) -> tuple[list, bytes]:
    """(name, dtype, shape) triples and the concatenated C-order bytes of a writer's ``side`` mapping."""
    if side is None:
        return [], b""
    if not isinstance(side, dict):
        raise UsageError(f"side must be a dict of name -> array, got {type(side).__name__}")
    specs, parts = [], []
    for name, value in side.items():
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"side array {_shown(name)} is not an array ({exc})") from None
        specs.append((name, array.dtype.str, array.shape))
        parts.append(array.tobytes(order="C"))
    return specs, b"".join(parts)


def pack_side(raw: bytes, specs: tuple[SideSpec, ...]) -> bytes:
    """The side section: empty without side arrays, else one zstd frame (level: an encoder choice)."""
    if not specs:
        return b""
    return zstandard.ZstdCompressor(level=19 if len(raw) <= 1 << 16 else 6).compress(raw)


def unpack_side(section: bytes, specs: tuple[SideSpec, ...]) -> dict[str, np.ndarray]:
    if not specs:
        return {}
    sizes = [math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in specs]
    raw = checked_frame(section, sum(sizes), "the side section")
    if len(raw) != sum(sizes):
        raise CorruptArchiveError(f"the side section holds {len(raw)} bytes, its arrays need {sum(sizes)}")
    out, start = {}, 0
    buffer = bytearray(raw)  # writable arrays without a second copy
    for spec, size in zip(specs, sizes):
        array = np.frombuffer(buffer, dtype=spec.dtype, count=size // np.dtype(spec.dtype).itemsize, offset=start)
        if spec.dtype == "|b1" and np.any(array.view(np.uint8) > 1):
            raise CorruptArchiveError(f"side array {spec.name!r} holds bool bytes other than 0 and 1")
        out[spec.name] = array.reshape(spec.shape)
        start += size
    return out
