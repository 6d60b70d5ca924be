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
import sys
from dataclasses import dataclass

import numpy as np
import zstandard
from threadpoolctl import ThreadpoolController

from bbarc.errors import CodingError, CorruptArchiveError

from .ans import AnsLanes, message_words, raise_unpushable
from .codecs import Bytes, Uniform
from .model import Model

HEADER_VERSION = 1
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
    """One chunk's chain while it is being encoded: lane ``lane`` of the shared ``AnsLanes``."""

    items: np.ndarray
    chunk: int
    side: dict
    lanes: AnsLanes
    lane: int
    n_header: int = 0
    next: int = 0

    def restart(self) -> None:
        """(Re)seed the chain with the header; called again with one more verbatim item if the seed was short."""
        self.lanes.reset(self.lane)
        Bytes.push(self.lanes.stack(self.lane), _header_bytes(self.items, self.n_header, self.chunk, self.side))
        self.next = self.n_header

    def payload(self) -> bytes:
        return struct.pack("<I", self.n_header) + self.lanes.stack(self.lane).to_bytes()


def _push_round(model: Model, lanes: AnsLanes, chains: list[_Encoder]) -> list[_Encoder]:
    """Push the next item of every chain, in Bit-Swap order, sharing one network call and one kernel call per
    layer: pop z1 ~ q(z1|x), push x ~ p(x|z1), pop z2 ~ q(z2|z1), push z1 ~ p(z1|z2), ..., push z_L uniformly.
    A chain whose pop finds too few bits restarts with one more verbatim item. Returns the chains that advanced."""
    below = np.stack([c.items[c.next] for c in chains])
    symbols = model.to_symbols(below)
    ids = np.array([c.lane for c in chains], dtype=np.int64)
    for layer in range(1, len(model.latent_layers) + 1):
        z, status = model.posterior(layer, below).pop_lanes(lanes, ids)
        if (short := status >= 0).any():
            for c in (c for c, bad in zip(chains, short) if bad):
                c.n_header += 1  # always possible: this chain's current item is not in its header yet
                c.restart()
            keep = ~short
            chains, ids, z, symbols = [c for c, k in zip(chains, keep) if k], ids[keep], z[keep], symbols[keep]
            if not chains:
                return chains
        _check_pushed(model.conditional(layer, z).push_lanes(lanes, ids, symbols), symbols.shape[1])
        below = symbols = z
    top = model.latent_layers[-1]
    _check_pushed(Uniform(top.size, top.bits).push_lanes(lanes, ids, symbols), top.size)
    return chains


def _check_pushed(status: np.ndarray, n: int) -> None:
    if (status >= 0).any():
        raise_unpushable(int(status[status >= 0][0]), n)


def single_threaded(fn):
    """The network calls here are small matrix products, one per item: multi-threaded BLAS (or OpenMP, which
    torch's int8 products use) makes them slower (10x when the cores are busy, measured) and spends twice the CPU
    time, so coding runs them on one thread; use ``workers`` for parallelism. Exactness does not depend on this
    (see plugins.intnet)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _thread_pools().limit(limits=1):
            return fn(*args, **kwargs)

    return wrapper


_pools: tuple[int, ThreadpoolController] | None = None


def _thread_pools() -> ThreadpoolController:
    """The process's thread pools (BLAS, OpenMP). Finding them costs 0.5 ms, which a random-access read would
    pay every time, so they are looked up again only after new modules (and so maybe new libraries) loaded."""
    global _pools
    if _pools is None or _pools[0] != len(sys.modules):
        _pools = (len(sys.modules), ThreadpoolController())
    return _pools[1]


@single_threaded
def encode_chunks(model: Model, chunks: list[tuple[np.ndarray, int, dict]], progress=None) -> list[bytes]:
    """Code chunks ``(items, chunk index, side data)``, each as its own chain, in lockstep: the chains advance
    item by item together so each network call serves all of them. Each payload is bit-identical to coding
    its chunk alone (models are batch-invariant), so any chunk still decodes on its own."""
    lanes = AnsLanes(len(chunks), max([1024] + [items.nbytes // 4 for items, _, _ in chunks]))
    chains = []
    for lane, (items, chunk, side) in enumerate(chunks):
        header_only = model.item_codec() is None or len(items) == 0
        c = _Encoder(items, chunk, side or {}, lanes, lane, n_header=len(items) if header_only else 0)
        c.restart()
        chains.append(c)
    while active := [c for c in chains if c.next < len(c.items)]:
        for c in _push_round(model, lanes, active):
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
    lane: int
    out: np.ndarray
    next: int


def _decoders(payloads: list[tuple[bytes, int, int]], item_shape, dtype) -> tuple[AnsLanes, list[_Decoder]]:
    chains, messages = [], []
    for lane, (payload, n_items, chunk) in enumerate(payloads):
        if len(payload) < 12:
            raise CorruptArchiveError(f"chunk {chunk}: payload of {len(payload)} bytes is too short", chunk=chunk)
        (n_header,) = struct.unpack_from("<I", payload)
        if n_header > n_items:
            raise CorruptArchiveError(f"chunk {chunk}: header claims {n_header} of {n_items} items", chunk=chunk)
        chains.append(_Decoder(chunk, n_items, n_header, lane, np.empty((n_items, *item_shape), dtype=dtype),
                               n_items - 1))
        try:
            message_words(payload[4:])  # checked here, so that an error names the chunk
        except CorruptArchiveError as exc:
            raise CorruptArchiveError(f"chunk {chunk}: {exc}", chunk=chunk) from None
        messages.append(payload[4:])
    return AnsLanes.from_messages(messages), chains


def _pop_round(model: Model, lanes: AnsLanes, chains: list[_Decoder]) -> None:
    """Pop the last remaining item of every chain: the exact reverse of ``_push_round``."""
    ids = np.array([c.lane for c in chains], dtype=np.int64)
    top = model.latent_layers[-1]
    z = _guard(chains, *Uniform(top.size, top.bits).pop_lanes(lanes, ids))
    for layer in range(len(model.latent_layers), 0, -1):
        below = _guard(chains, *model.conditional(layer, z).pop_lanes(lanes, ids))
        raw = model.from_symbols(below) if layer == 1 else below
        _guard(chains, None, model.posterior(layer, raw).push_lanes(lanes, ids, z), "met a symbol of probability 0")
        z = below
    for j, c in enumerate(chains):
        c.out[c.next] = raw[j]
        c.next -= 1


def _guard(chains: list[_Decoder], value, status: np.ndarray, what: str = "ran out of bits"):
    """``value`` if every lane's status is clean, else the damaged chunk's error (the others are unaffected)."""
    if (status >= 0).any():
        lane = int(np.flatnonzero(status >= 0)[0])
        chunk = chains[lane].chunk
        raise CorruptArchiveError(f"chunk {chunk}: the coded data is damaged (the chain {what} at symbol "
                                  f"{status[lane]} of an item)", chunk=chunk)
    return value


@single_threaded
def decode_chunks(model: Model, payloads: list[tuple[bytes, int, int]], item_shape: tuple[int, ...],
                  dtype: np.dtype, progress=None) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Decode chunks ``(payload, item count, chunk index)`` in lockstep (see ``encode_chunks``)."""
    lanes, chains = _decoders(payloads, item_shape, dtype)
    while active := [c for c in chains if c.next >= c.n_header]:
        _pop_round(model, lanes, active)
        if progress:
            progress(len(active))
    results = []
    for c in chains:
        results.append(_finish(lanes, c, item_shape, dtype))
        if progress:
            progress(c.n_header)
    return results


def _finish(lanes: AnsLanes, c: _Decoder, item_shape, dtype) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pop the header off a chain whose coded items are all decoded; check that nothing is left and that the
    header agrees with the index (the end-of-chain integrity check)."""
    stack = lanes.stack(c.lane)
    try:
        raw = Bytes.pop(stack)
    except CodingError as exc:
        raise CorruptArchiveError(f"chunk {c.chunk}: the coded data is damaged ({exc})", chunk=c.chunk) from None
    meta, head, side = _parse_header(raw, c.chunk)
    if not stack.is_empty:
        raise CorruptArchiveError(f"chunk {c.chunk}: bits are left over after decoding: the data is damaged",
                                  chunk=c.chunk)
    if (meta["items"] != c.n_items or tuple(meta["shape"]) != tuple(item_shape)
            or np.dtype(meta["dtype"]) != dtype or meta["header_items"] != c.n_header):
        raise CorruptArchiveError(f"chunk {c.chunk}: its header disagrees with the archive index", chunk=c.chunk)
    c.out[: c.n_header] = head
    return c.out, side


def decode_chunk(model: Model, payload: bytes, n_items: int, item_shape: tuple[int, ...], dtype: np.dtype,
                 chunk: int = 0, progress=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return decode_chunks(model, [(payload, n_items, chunk)], item_shape, dtype, progress=progress)[0]


class ChunkDecoder:
    """One chunk decoded on demand, for random access. The chain pops its last item first, so item i needs
    only the items after it: ``down_to(i)`` decodes that far (half a chunk on average) and a later call goes on
    from where the last one stopped. Once every coded item is out, the header is popped and the end-of-chain
    integrity check runs (``result``); until then the payload checksum is the only guard."""

    def __init__(self, model: Model, payload: bytes, n_items: int, item_shape: tuple[int, ...], dtype: np.dtype,
                 chunk: int = 0):
        self.model, self.item_shape, self.dtype = model, tuple(item_shape), np.dtype(dtype)
        self._lanes, (self._chain,) = _decoders([(payload, n_items, chunk)], item_shape, dtype)
        self._result = None

    @single_threaded
    def down_to(self, first: int) -> np.ndarray:
        """Items ``first ..`` to the end of the chunk (a view: do not modify)."""
        c = self._chain
        while c.next >= max(first, c.n_header):
            _pop_round(self.model, self._lanes, [c])
        if c.next < c.n_header and self._result is None:
            self._result = _finish(self._lanes, c, self.item_shape, self.dtype)
        return c.out[first:]

    @property
    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """(items, side data) once the whole chunk is decoded and checked, else None."""
        return self._result
