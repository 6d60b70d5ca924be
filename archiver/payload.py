"""A chunk's payload (format v1) and the content hash of a chunk's items.

Payload: u32 (little-endian) number of items stored verbatim in the seed header, then the chunk's ANS message
(``bbarc.ans``). The bottom of the message is the seed header (``bbarc.codecs.Bytes``); the rest codes the other
items (``bbarc.chain``). A chunk whose items are all in its header (a model-free family) is its header alone.

Seed header, zstd-compressed: u32 length of a JSON object (header version, chunk index, item count, item shape,
dtype, header item count, side data dtypes and shapes), the JSON, the header items' bytes, then each side array's
bytes in the JSON's order.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

import numpy as np
import zstandard

from bbarc.errors import CorruptArchiveError
from bbarc.formats.layout import CHECKSUM_PREFIX

HEADER_VERSION = 1
ZSTD_LEVEL = 19  # the encoder's choice: any level decodes the same, so it is not part of the codec's identity
_PREFIX = struct.Struct("<I")


def raw_hash(items: np.ndarray) -> str:
    """Hash of the decoded content of a chunk: dtype, shape and bytes."""
    h = hashlib.blake2b(f"{items.dtype.str}{items.shape}".encode(), digest_size=16)
    h.update(np.ascontiguousarray(items).tobytes())
    return CHECKSUM_PREFIX + h.hexdigest()


def pack(n_header: int, message: bytes) -> bytes:
    return _PREFIX.pack(n_header) + message


def header_item_count(payload: bytes) -> int:
    """How many of a payload's items sit in its seed header (unchecked: see ``unpack``)."""
    return _PREFIX.unpack_from(payload)[0]


def unpack(payload: bytes, n_items: int, chunk: int) -> tuple[int, bytes]:
    """(number of header items, ANS message) of a chunk of ``n_items`` items, checked against that count."""
    if len(payload) < _PREFIX.size:
        raise CorruptArchiveError(f"chunk {chunk}: payload of {len(payload)} bytes is too short", chunk=chunk)
    n_header = header_item_count(payload)
    if n_header > n_items:
        raise CorruptArchiveError(f"chunk {chunk}: header claims {n_header} of {n_items} items", chunk=chunk)
    return n_header, payload[_PREFIX.size :]


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


def parse_seed_header(raw: bytes, chunk: int) -> SeedHeader:
    try:
        data = zstandard.ZstdDecompressor().decompress(raw)
        (n,) = _PREFIX.unpack_from(data)
        meta = json.loads(data[_PREFIX.size : _PREFIX.size + n])
        pos = _PREFIX.size + n
        dtype, shape = np.dtype(meta["dtype"]), tuple(meta["shape"])
        count = meta["header_items"] * int(np.prod(shape, dtype=np.int64))
        head = np.frombuffer(data, dtype, count, pos).reshape((meta["header_items"], *shape))
        pos += head.nbytes
        side = {}
        for key, (sdtype, sshape) in meta["side"].items():
            arr = np.frombuffer(data, np.dtype(sdtype), int(np.prod(sshape, dtype=np.int64)), pos).reshape(sshape)
            side[key] = arr
            pos += arr.nbytes
        return SeedHeader(meta["items"], shape, dtype, head, side)
    except (zstandard.ZstdError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise CorruptArchiveError(f"chunk {chunk}: its header does not parse ({exc})", chunk=chunk) from None


def check_seed_header(header: SeedHeader, n_items: int, n_header: int, item_shape, dtype, chunk: int) -> None:
    """The end-of-chain check: the header must describe the chunk the archive index and payload prefix describe."""
    if (header.items != n_items or header.shape != tuple(item_shape) or header.dtype != dtype
            or len(header.head) != n_header):
        raise CorruptArchiveError(f"chunk {chunk}: its header disagrees with the archive index", chunk=chunk)
