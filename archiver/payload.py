"""A chunk's payload (format v1) and the content hash of a chunk's items.

Payload: u32 (little-endian) number of items stored verbatim in the seed header, then the chunk's ANS message
(``bbarc.ans``). The bottom of the message is the seed header (``bbarc.codecs.Bytes``); the rest codes the other
items (``bbarc.chain``). A chunk whose items are all in its header (a model-free family) is its header alone. With
the ``HEADERLESS`` flag in the prefix (chain header version 2), the seed header is there only when it holds items.

Seed header, zstd-compressed: u32 length of a JSON object (header version, chunk index, item count, item shape,
dtype, header item count, side data dtypes and shapes), the JSON, the header items' bytes, then each side array's
bytes in the JSON's order.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass

import numpy as np
import zstandard

from bbarc.errors import CorruptArchiveError
from bbarc.formats.layout import CHECKSUM_PREFIX, checked_frame, decode_json_object, is_count
from bbarc.formats.layout2 import SIDE_RAW_MAX

HEADER_VERSION = 1
ZSTD_LEVEL = 19  # the encoder's choice: any level decodes the same, so it is not part of the codec's identity
_PREFIX = struct.Struct("<I")


SUPPORTED_DTYPES = frozenset("u1 u2 u4 u8 i1 i2 i4 i8 f2 f4 f8 b1".split())
MAX_NDIM = 32


def _fail(what: str) -> CorruptArchiveError:
    return CorruptArchiveError(f"the archive metadata is malformed: {what}")


def checked_shape(value, what: str) -> tuple[int, ...]:
    """An item shape from untrusted JSON: a list of at most 32 sizes, each below 2**31."""
    if not isinstance(value, list) or len(value) > MAX_NDIM or not all(type(v) is int and 0 <= v < 2**31
                                                                        for v in value):
        raise _fail(f"{what} is not a list of at most {MAX_NDIM} non-negative sizes")
    return tuple(value)


def checked_dtype(value, what: str) -> np.dtype:
    """A numeric dtype from an untrusted string: no object, string or structured dtypes."""
    try:
        dtype = np.dtype(value) if isinstance(value, str) and len(value) <= 8 else None
    except TypeError:
        dtype = None
    if dtype is None or f"{dtype.kind}{dtype.itemsize}" not in SUPPORTED_DTYPES:
        raise _fail(f"{what} {str(value)[:20]!r} is not a supported numeric dtype")
    return dtype


def raw_hash(items: np.ndarray) -> str:
    """Hash of the decoded content of a chunk: dtype, shape and bytes."""
    h = hashlib.blake2b(f"{items.dtype.str}{items.shape}".encode(), digest_size=16)
    h.update(np.ascontiguousarray(items).tobytes())
    return CHECKSUM_PREFIX + h.hexdigest()


# Payload prefix flag (chain header version 2): the chain's first coded item was pushed without bits back, and the
# seed header is in the message only if it holds items (h > 0). Version-1 payloads never set it: their h is at most
# the chunk's item count, below 2**31 but for a chunk of 2**31 items all in its header, whose prefix is exactly that.
HEADERLESS = 1 << 31


def pack(n_header: int, message: bytes, headerless: bool = False) -> bytes:
    return _PREFIX.pack(n_header | (HEADERLESS if headerless else 0)) + message


def header_item_count(payload: bytes) -> int:
    """How many of a payload's items sit in its seed header (unchecked: see ``unpack``)."""
    return _PREFIX.unpack_from(payload)[0] & (HEADERLESS - 1)


def unpack(payload: bytes, n_items: int, chunk: int) -> tuple[int, bool, bytes]:
    """(number of header items, whether the payload is ``HEADERLESS``, ANS message) of a chunk of ``n_items``
    items, checked against that count."""
    if len(payload) < _PREFIX.size:
        raise CorruptArchiveError(f"chunk {chunk}: payload of {len(payload)} bytes is too short", chunk=chunk)
    (prefix,) = _PREFIX.unpack_from(payload)
    headerless = prefix >= HEADERLESS and prefix != n_items
    n_header = prefix - HEADERLESS if headerless else prefix
    if n_header > n_items:
        raise CorruptArchiveError(f"chunk {chunk}: header claims {n_header} of {n_items} items", chunk=chunk)
    return n_header, headerless, payload[_PREFIX.size :]


def seed_header(items: np.ndarray, n_header: int, chunk: int, side: dict[str, np.ndarray]) -> bytes:
    """The compressed seed header of a chunk of ``items`` whose first ``n_header`` are stored in it."""
    meta = dict(v=HEADER_VERSION, chunk=chunk, items=len(items), shape=list(items.shape[1:]), dtype=items.dtype.str,
                header_items=n_header, side={k: [v.dtype.str, list(v.shape)] for k, v in side.items()})
    blob = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
    parts = [_PREFIX.pack(len(blob)), blob, np.ascontiguousarray(items[:n_header]).tobytes()]
    parts += [np.ascontiguousarray(v).tobytes() for v in side.values()]
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(b"".join(parts))


@dataclass(frozen=True)
class SeedHeader:
    items: int
    shape: tuple[int, ...]
    dtype: np.dtype
    head: np.ndarray  # the items stored in the header
    side: dict[str, np.ndarray]


# Bounds on a seed header read from a file (formats/SPEC.md, "Bounds on sizes read from a file"): its JSON, and
# the side arrays a version-1 chunk keeps in it. The frame may hold no more than these plus the header's items.
HEADER_JSON_MAX = 1 << 16
HEADER_SIDE_MAX = SIDE_RAW_MAX


def seed_header_limit(n_header: int, item_bytes: int) -> int:
    """Most bytes the decompressed seed header of a chunk with ``n_header`` verbatim items may hold."""
    return _PREFIX.size + HEADER_JSON_MAX + n_header * item_bytes + HEADER_SIDE_MAX


def _header_fields(meta) -> tuple[int, tuple[int, ...], np.dtype, int, dict]:
    """(items, shape, dtype, header items, side specs) of a seed header's JSON, every value type-checked."""
    if not isinstance(meta, dict):
        raise ValueError("its JSON is not an object")
    items, n_header, side = meta.get("items"), meta.get("header_items"), meta.get("side")
    if not (is_count(items) and is_count(n_header) and n_header <= items and isinstance(side, dict)):
        raise ValueError("item counts or side specs are missing or mistyped")
    specs = {}
    for key, spec in side.items():
        if not (isinstance(spec, list) and len(spec) == 2):
            raise ValueError(f"side spec {str(key)[:20]!r} is not [dtype, shape]")
        specs[key] = (checked_dtype(spec[0], "side dtype"), checked_shape(spec[1], "side shape"))
    return items, checked_shape(meta.get("shape"), "item shape"), checked_dtype(meta.get("dtype"), "dtype"), \
        n_header, specs


def _take(data: bytes, dtype: np.dtype, shape: tuple[int, ...], pos: int) -> np.ndarray:
    """The array of ``shape`` at ``pos`` in ``data``, a view; ValueError if the data is too short for it."""
    size = math.prod(shape) * dtype.itemsize
    if pos + size > len(data):
        raise ValueError(f"it ends before its {size}-byte array at byte {pos}")
    return np.frombuffer(data, dtype, math.prod(shape), pos).reshape(shape)


def parse_seed_header(raw: bytes, chunk: int, limit: int) -> SeedHeader:
    """The seed header in ``raw``; its decompressed size must be at most ``limit`` (``seed_header_limit``),
    checked before decompressing. CorruptArchiveError naming ``chunk`` if it is damaged or crafted."""
    try:
        data = checked_frame(raw, limit, "its seed header")
        (n,) = _PREFIX.unpack_from(data)
        if n > HEADER_JSON_MAX or _PREFIX.size + n > len(data):
            raise ValueError(f"its JSON length {n} is out of bounds")
        meta = decode_json_object(data[_PREFIX.size : _PREFIX.size + n], "its JSON")
        items, shape, dtype, n_header, specs = _header_fields(meta)
        pos = _PREFIX.size + n
        head = _take(data, dtype, (n_header, *shape), pos)
        pos += head.nbytes
        side = {}
        for key, (sdtype, sshape) in specs.items():
            side[key] = _take(data, sdtype, sshape, pos)
            pos += side[key].nbytes
        if pos != len(data):
            raise ValueError(f"{len(data) - pos} bytes follow its arrays")
        return SeedHeader(items, shape, dtype, head, side)
    except (CorruptArchiveError, ValueError, struct.error) as exc:
        raise CorruptArchiveError(f"chunk {chunk}: its seed header is damaged ({exc})", chunk=chunk) from None


def check_seed_header(header: SeedHeader, n_items: int, n_header: int, item_shape, dtype, chunk: int) -> None:
    """The end-of-chain check: the header must describe the chunk the archive index and payload prefix describe."""
    if (header.items != n_items or header.shape != tuple(item_shape) or header.dtype != dtype
            or len(header.head) != n_header):
        raise CorruptArchiveError(f"chunk {chunk}: its header disagrees with the archive index", chunk=chunk)
