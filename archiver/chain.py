"""One bits-back (BB-ANS / Bit-Swap) chain per chunk, seeded by the chunk's zstd-compressed header.

The header (item count, shape, dtype, the first items themselves, side data) is zstd-compressed and its bytes
are pushed first, so the first posterior pops consume real information, not invented bits. If the seed is too
small for the first pop the encoder moves one more item into the header and starts over; decoding unwinds the
chain and recovers the header from the bottom of the stack, which must then be empty (an integrity check).

Payload of a chunk: u32 number of items stored in the header, then the ANS message (``AnsStack.to_bytes``).
"""
from __future__ import annotations

import json
import struct

import numpy as np
import zstandard

from formats.errors import CodingError, CorruptArchiveError

from .ans import AnsStack
from .codecs import Bytes, Uniform
from .model import Model

HEADER_VERSION = 1
ZSTD_LEVEL = 19


def push_item(stack: AnsStack, model: Model, x: np.ndarray, q1=None) -> None:
    """Bit-Swap order: pop z1 ~ q(z1|x), push x ~ p(x|z1), pop z2 ~ q(z2|z1), push z1 ~ p(z1|z2), ..., push z_L."""
    below, symbols = x, model.to_symbols(x[None])[0]
    for layer in range(1, len(model.latent_layers) + 1):
        q = q1 if (layer == 1 and q1 is not None) else model.posterior(layer, below[None])
        z = q.pop(stack)
        model.conditional(layer, z[None]).push(stack, symbols)
        below = symbols = z
    top = model.latent_layers[-1]
    Uniform(top.size, top.bits).push(stack, below)


def pop_item(stack: AnsStack, model: Model) -> np.ndarray:
    top = model.latent_layers[-1]
    z = Uniform(top.size, top.bits).pop(stack)
    for layer in range(len(model.latent_layers), 0, -1):
        below = model.conditional(layer, z[None]).pop(stack)
        if layer == 1:
            below = model.from_symbols(below[None])[0]
        model.posterior(layer, below[None]).push(stack, z)
        z = below
    return z


def _header_bytes(items: np.ndarray, n_header: int, chunk: int, side: dict[str, np.ndarray]) -> bytes:
    head = items[:n_header]
    meta = dict(v=HEADER_VERSION, chunk=chunk, items=len(items), shape=list(items.shape[1:]), dtype=items.dtype.str,
                header_items=n_header, side={k: [v.dtype.str, list(v.shape)] for k, v in side.items()})
    blob = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
    parts = [struct.pack("<I", len(blob)), blob, np.ascontiguousarray(head).tobytes()]
    parts += [np.ascontiguousarray(v).tobytes() for v in side.values()]
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(b"".join(parts))


def _parse_header(raw: bytes, chunk: int) -> tuple[dict, np.ndarray, dict[str, np.ndarray]]:
    try:
        data = zstandard.ZstdDecompressor().decompress(raw)
        (n,) = struct.unpack_from("<I", data)
        meta = json.loads(data[4 : 4 + n])
        pos = 4 + n
        dtype, shape = np.dtype(meta["dtype"]), tuple(meta["shape"])
        count = meta["header_items"] * int(np.prod(shape, dtype=np.int64))
        head = np.frombuffer(data, dtype, count, pos).reshape((meta["header_items"], *shape))
        pos += head.nbytes
        side = {}
        for key, (sdtype, sshape) in meta["side"].items():
            arr = np.frombuffer(data, np.dtype(sdtype), int(np.prod(sshape, dtype=np.int64)), pos).reshape(sshape)
            side[key] = arr
            pos += arr.nbytes
    except (zstandard.ZstdError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise CorruptArchiveError(f"chunk {chunk}: its header does not parse ({exc})", chunk=chunk) from None
    return meta, head, side


def encode_chunk(model: Model, items: np.ndarray, chunk: int = 0, side: dict[str, np.ndarray] | None = None,
                 progress=None) -> bytes:
    """Code ``items`` (N, *shape) as one chain; returns the chunk payload."""
    side = side or {}
    n = len(items)
    n_header = n if model.header_only else 0
    # x is known when encoding, so q(z1|x) for the whole chunk comes from one batched network call.
    q1 = model.posterior(1, items) if n_header < n else None
    per_item = model.latent_layers[0].size if q1 is not None else 0
    while True:
        try:
            stack = AnsStack(capacity=max(1024, items.nbytes // 4))
            Bytes.push(stack, _header_bytes(items, n_header, chunk, side))
            for i in range(n_header, n):
                push_item(stack, model, items[i], q1=q1.take(slice(i * per_item, (i + 1) * per_item)))
                if progress:
                    progress(1)
            if progress and n_header:
                progress(n_header)
            return struct.pack("<I", n_header) + stack.to_bytes()
        except CodingError:
            if n_header >= n:
                raise
            n_header += 1  # the seed was too small for the first pops: store one more item verbatim


def decode_chunk(model: Model, payload: bytes, n_items: int, item_shape: tuple[int, ...], dtype: np.dtype,
                 chunk: int = 0, progress=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if len(payload) < 12:
        raise CorruptArchiveError(f"chunk {chunk}: payload of {len(payload)} bytes is too short", chunk=chunk)
    (n_header,) = struct.unpack_from("<I", payload)
    if n_header > n_items:
        raise CorruptArchiveError(f"chunk {chunk}: header claims {n_header} of {n_items} items", chunk=chunk)
    stack = AnsStack.from_bytes(payload[4:])
    out = np.empty((n_items, *item_shape), dtype=dtype)
    try:
        for i in range(n_items - 1, n_header - 1, -1):
            out[i] = pop_item(stack, model)
            if progress:
                progress(1)
        meta, head, side = _parse_header(Bytes.pop(stack), chunk)
    except CodingError as exc:
        raise CorruptArchiveError(f"chunk {chunk}: the coded data is damaged ({exc})", chunk=chunk) from None
    if not stack.is_empty:
        raise CorruptArchiveError(f"chunk {chunk}: bits are left over after decoding: the data is damaged", chunk=chunk)
    if meta["items"] != n_items or tuple(meta["shape"]) != tuple(item_shape) or np.dtype(meta["dtype"]) != dtype:
        raise CorruptArchiveError(f"chunk {chunk}: its header disagrees with the archive index", chunk=chunk)
    out[:n_header] = head
    return out, side
