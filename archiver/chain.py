"""One bits-back (BB-ANS / Bit-Swap) chain per chunk, seeded by the chunk's zstd-compressed header.

The header (item count, shape, dtype, the first items themselves, side data) is zstd-compressed and its bytes
are pushed first, so the first posterior pops consume real information, not invented bits. If the seed is too
small for the first pop the encoder moves one more item into the header and starts over; decoding unwinds the
chain and recovers the header from the bottom of the stack, which must then be empty (an integrity check).

Payload of a chunk: u32 number of items stored in the header, then the ANS message (``AnsStack.to_bytes``).
"""
from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass

import numpy as np
import zstandard
from threadpoolctl import threadpool_limits

from formats.errors import CodingError, CorruptArchiveError

from .ans import AnsStack
from .codecs import Bytes, Uniform
from .model import Model

HEADER_VERSION = 1
Q1_BLOCK = 256
ZSTD_LEVEL = 19


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


@dataclass
class _Encoder:
    """One chunk's chain while it is being encoded."""

    model: Model
    items: np.ndarray
    chunk: int
    side: dict
    n_header: int = 0
    stack: AnsStack | None = None
    next: int = 0
    _q1: tuple = (-1, None)

    def q1(self, i: int, size: int):
        """q(z1|x_i). x is known when encoding, so q(z1|x) comes from one network call per block of items
        (blocks bound the memory a convolutional network needs)."""
        block = i // Q1_BLOCK
        if self._q1[0] != block:
            self._q1 = (block, self.model.posterior(1, self.items[block * Q1_BLOCK : (block + 1) * Q1_BLOCK]))
        return _rows(self._q1[1], i - block * Q1_BLOCK, size)

    def restart(self) -> None:
        """(Re)seed the chain with the header; called again with one more verbatim item if the seed was short."""
        self.stack = AnsStack(capacity=max(1024, self.items.nbytes // 4))
        Bytes.push(self.stack, _header_bytes(self.items, self.n_header, self.chunk, self.side))
        self.next = self.n_header

    def payload(self) -> bytes:
        return struct.pack("<I", self.n_header) + self.stack.to_bytes()


def _rows(codec, j: int, size: int):
    return codec.take(slice(j * size, (j + 1) * size))


def _push_round(model: Model, chains: list[_Encoder]) -> list[_Encoder]:
    """Push the next item of every chain, in Bit-Swap order, sharing one network call per layer:
    pop z1 ~ q(z1|x), push x ~ p(x|z1), pop z2 ~ q(z2|z1), push z1 ~ p(z1|z2), ..., push z_L uniformly.
    A chain whose pop finds too few bits restarts with one more verbatim item. Returns the chains that advanced."""
    raw = np.stack([c.items[c.next] for c in chains])
    symbols = model.to_symbols(raw)
    for layer, spec in enumerate(model.latent_layers, start=1):
        q = None if layer == 1 else model.posterior(layer, raw)
        zs, ok = [], []
        for j, c in enumerate(chains):
            codec = c.q1(c.next, spec.size) if layer == 1 else _rows(q, j, spec.size)
            try:
                zs.append(codec.pop(c.stack))
                ok.append(j)
            except CodingError:
                if c.n_header >= len(c.items):
                    raise
                c.n_header += 1
                c.restart()
        chains, symbols = [chains[j] for j in ok], symbols[ok]
        if not chains:
            return chains
        raw = np.stack(zs)
        p = model.conditional(layer, raw)
        for j, c in enumerate(chains):
            _rows(p, j, symbols.shape[1]).push(c.stack, symbols[j])
        symbols = raw
    top = model.latent_layers[-1]
    for j, c in enumerate(chains):
        Uniform(top.size, top.bits).push(c.stack, symbols[j])
    return chains


def single_threaded_blas(fn):
    """The network calls here are small matrix products, one per item: multi-threaded BLAS makes them slower
    (10x when the cores are busy, measured), so coding runs BLAS on one thread; use ``workers`` for parallelism.
    Exactness does not depend on this (see plugins.intnet)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


@single_threaded_blas
def encode_chunks(model: Model, chunks: list[tuple[np.ndarray, int, dict]], progress=None) -> list[bytes]:
    """Code chunks ``(items, chunk index, side data)``, each as its own chain, in lockstep: the chains advance
    item by item together so each network call serves all of them. Each payload is bit-identical to coding
    its chunk alone (models are batch-invariant), so any chunk still decodes on its own."""
    chains = []
    for items, chunk, side in chunks:
        header_only = model.header_only or len(items) == 0
        c = _Encoder(model, items, chunk, side or {}, n_header=len(items) if header_only else 0)
        c.restart()
        chains.append(c)
    while active := [c for c in chains if c.next < len(c.items)]:
        for c in _push_round(model, active):
            c.next += 1
            if progress:
                progress(1)
    if progress:
        progress(sum(c.n_header for c in chains))
    return [c.payload() for c in chains]


def encode_chunk(model: Model, items: np.ndarray, chunk: int = 0, side: dict[str, np.ndarray] | None = None,
                 progress=None) -> bytes:
    """Code ``items`` (N, *shape) as one chain; returns the chunk payload."""
    return encode_chunks(model, [(items, chunk, side)], progress=progress)[0]


@dataclass
class _Decoder:
    chunk: int
    n_items: int
    n_header: int
    stack: AnsStack
    out: np.ndarray
    next: int


def _decoder(payload: bytes, n_items: int, item_shape, dtype, chunk: int) -> _Decoder:
    if len(payload) < 12:
        raise CorruptArchiveError(f"chunk {chunk}: payload of {len(payload)} bytes is too short", chunk=chunk)
    (n_header,) = struct.unpack_from("<I", payload)
    if n_header > n_items:
        raise CorruptArchiveError(f"chunk {chunk}: header claims {n_header} of {n_items} items", chunk=chunk)
    return _Decoder(chunk, n_items, n_header, AnsStack.from_bytes(payload[4:]),
                    np.empty((n_items, *item_shape), dtype=dtype), n_items - 1)


def _pop_round(model: Model, chains: list[_Decoder]) -> None:
    """Pop the last remaining item of every chain: the exact reverse of ``_push_round``."""
    top = model.latent_layers[-1]
    z = np.stack([_guard(c, Uniform(top.size, top.bits).pop) for c in chains])
    for layer in range(len(model.latent_layers), 0, -1):
        p = model.conditional(layer, z)
        size = len(p) // len(chains)
        below = np.stack([_guard(c, _rows(p, j, size).pop) for j, c in enumerate(chains)])
        raw = model.from_symbols(below) if layer == 1 else below
        q = model.posterior(layer, raw)
        for j, c in enumerate(chains):
            _guard(c, _rows(q, j, z.shape[1]).push, z[j])
        z = below
    for j, c in enumerate(chains):
        c.out[c.next] = raw[j]
        c.next -= 1


def _guard(chain: _Decoder, op, *args):
    try:
        return op(chain.stack, *args)
    except CodingError as exc:
        raise CorruptArchiveError(f"chunk {chain.chunk}: the coded data is damaged ({exc})", chunk=chain.chunk) from None


@single_threaded_blas
def decode_chunks(model: Model, payloads: list[tuple[bytes, int, int]], item_shape: tuple[int, ...],
                  dtype: np.dtype, progress=None) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Decode chunks ``(payload, item count, chunk index)`` in lockstep (see ``encode_chunks``)."""
    chains = [_decoder(payload, n, item_shape, dtype, chunk) for payload, n, chunk in payloads]
    while active := [c for c in chains if c.next >= c.n_header]:
        _pop_round(model, active)
        if progress:
            progress(len(active))
    results = []
    for c in chains:
        meta, head, side = _parse_header(_guard(c, Bytes.pop), c.chunk)
        if not c.stack.is_empty:
            raise CorruptArchiveError(f"chunk {c.chunk}: bits are left over after decoding: the data is damaged",
                                      chunk=c.chunk)
        if (meta["items"] != c.n_items or tuple(meta["shape"]) != tuple(item_shape)
                or np.dtype(meta["dtype"]) != dtype or meta["header_items"] != c.n_header):
            raise CorruptArchiveError(f"chunk {c.chunk}: its header disagrees with the archive index", chunk=c.chunk)
        c.out[: c.n_header] = head
        if progress:
            progress(c.n_header)
        results.append((c.out, side))
    return results


def decode_chunk(model: Model, payload: bytes, n_items: int, item_shape: tuple[int, ...], dtype: np.dtype,
                 chunk: int = 0, progress=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return decode_chunks(model, [(payload, n_items, chunk)], item_shape, dtype, progress=progress)[0]
