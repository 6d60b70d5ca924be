"""One bits-back chain per chunk: the model's item codec applied item by item, seeded by the chunk's header.

Chain header version 1: the seed header (``bbarc.payload``: item count, shape, dtype, the first items themselves,
side data) is pushed first, so the first pops of a bits-back codec consume real information, not invented bits. If
the seed is too small for a pop, the encoder moves one more item into the header and starts that chain over.
Decoding pops the items last first, then the header from the bottom of the message, which must then be empty (an
integrity check).

Version 2 (``payload.HEADERLESS`` payloads): a bits-back codec pushes the first coded item with ``push_first``,
drawing its latent from fixed scratch bits instead of taking bits back, so the chain needs no seed; the seed header
is pushed only when it holds items (after a restart), and the record carries everything else (container format
2). A chain then pays its first item's latent bits in full instead of a seed header of about twice that size.

The chain knows nothing of the model's shape: it needs only ``model.item_codec()``, a ``bbarc.codecs.Codec`` whose
symbols are items (one per lane), or None for a model-free family, whose chunks are stored whole in the header.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from bbarc.errors import CodingError, CorruptArchiveError

from . import fixedpoint
from .ans import AnsLanes, message_words
from .codecs import Bytes, Codec
from .execution import single_threaded
from .kernel_choice import advance, job
from .payload import (HEADER_VERSION, HEADERLESS, check_seed_header, pack, parse_seed_header, seed_header,
                      seed_header_limit, unpack)


CHAIN_VERSION = 2  # the chain header version new archives record; chunks of version 1 and 2 both decode
_SCRATCH_WORDS = 512  # scratch bits a first item's latents are drawn from (far more than a posterior pop takes)


def codec_parameters(header_version: int = CHAIN_VERSION) -> dict:
    """The identity of the coding scheme an archive's chunks need: an archive whose parameters differ cannot be
    decoded by this bbarc. (Encoder-only choices, like the seed header's zstd level, are not part of it.)
    ``header_version``: 1 where every chunk has a seed header, 2 where chunks may be ``HEADERLESS``."""
    return dict(fixedpoint.scheme_parameters(), chain="bits-back-ans", ans="rans64-32", header_version=header_version)


def decodable_parameters(recorded: dict) -> dict:
    """What an archive recording the scheme parameters ``recorded`` needs of this bbarc: the parameters of its
    chain header version if this bbarc reads it, else the newest (which then differ, and say so)."""
    version = recorded.get("header_version")
    return codec_parameters(version if version in (HEADER_VERSION, CHAIN_VERSION) else CHAIN_VERSION)


@functools.lru_cache(maxsize=1)
def _scratch_words() -> np.ndarray:
    words = np.random.default_rng(0).integers(0, 1 << 32, _SCRATCH_WORDS, dtype=np.uint64).astype(np.uint32)
    words.setflags(write=False)
    return words


def _scratch(lanes: int) -> AnsLanes:
    """Lanes each holding the same fixed message: the bits a chain's first item draws its latents from. Any bits
    would do (the decoder never sees them); fixed ones keep archives reproducible."""
    words = _scratch_words()  # drawn once per process, not per first round
    scratch = AnsLanes(lanes, _SCRATCH_WORDS)
    scratch.states[:, 0] = (1 << 63) | int(words[0])
    scratch.states[:, 1] = _SCRATCH_WORDS - 1
    scratch.bufs[:, : _SCRATCH_WORDS - 1] = words[1:]
    return scratch


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
    headerless: bool = False  # version 2 (see the module docstring)

    def restart(self) -> None:
        """(Re)seed the chain with the header; called again with one more verbatim item if a pop was short."""
        self.lanes.reset(self.lane)
        if self.n_header or not self.headerless:
            seed = seed_header(self.items, self.n_header, self.chunk, self.side)
            Bytes().push_lanes(self.lanes, np.array([self.lane]), [seed])
        self.next = self.n_header

    @property
    def first(self) -> bool:
        """Whether the next item is a version-2 chain's first coded item (``push_first``)."""
        return self.headerless and self.next == self.n_header

    def payload(self) -> bytes:
        return pack(self.n_header, self.lanes.message(self.lane), self.headerless)


def _push_round(codec: Codec, lanes: AnsLanes, chains: list[_Encoder]) -> list[_Encoder]:
    """Push the next item of every chain, sharing each network call and kernel call. A chain whose push finds too
    few bits restarts with one more verbatim item. Returns the chains that advanced."""
    firsts = [c for c in chains if c.first]
    if firsts:  # the first round, and restarts: these push without bits back
        rest = [c for c in chains if not c.first]
        items = np.stack([c.items[c.next] for c in firsts])
        status = codec.push_first(lanes, np.array([c.lane for c in firsts], dtype=np.int64), items,
                                  _scratch(len(firsts)), np.arange(len(firsts), dtype=np.int64))
        advance(len(firsts))
        return (_push_round(codec, lanes, rest) if rest else []) + _advanced(firsts, status)
    items = np.stack([c.items[c.next] for c in chains])
    status = codec.push_lanes(lanes, np.array([c.lane for c in chains], dtype=np.int64), items)
    advance(len(chains))  # items coded in this job (``kernel_choice``)
    return _advanced(chains, status)


def _advanced(chains: list[_Encoder], status: np.ndarray) -> list[_Encoder]:
    advanced = []
    for c, failed in zip(chains, status >= 0):
        if failed:
            c.n_header += 1  # always possible: this chain's current item is not in its header yet
            c.restart()
        else:
            advanced.append(c)
    return advanced


@single_threaded
def encode_chunks(model, chunks: list[tuple[np.ndarray, int, dict]], progress=None,
                  header_version: int | None = None) -> list[bytes]:
    """Code chunks ``(items, chunk index, side data)``, each as its own chain, in lockstep: the chains advance
    item by item together so each network call serves all of them. Each payload is bit-identical to coding
    its chunk alone (models are batch-invariant), so any chunk still decodes on its own. With ``header_version``
    2 (by default ``CHAIN_VERSION``), chunks without side data are ``HEADERLESS`` when the item codec allows."""
    header_version = CHAIN_VERSION if header_version is None else header_version
    codec = model.item_codec()
    lanes = AnsLanes(len(chunks), max([1024] + [items.nbytes // 4 for items, _, _ in chunks]))
    chains = []
    with job(sum(len(items) for items, _, _ in chunks)):  # how much work: ``kernel_choice``
        for lane, (items, chunk, side) in enumerate(chunks):
            headerless = header_version >= 2 and _starts_without_seed(codec) and not side and len(items) < HEADERLESS
            c = _Encoder(items, chunk, side or {}, lanes, lane, n_header=len(items) if codec is None else 0,
                         headerless=headerless)
            c.restart()
            chains.append(c)
        while active := [c for c in chains if c.next < len(c.items)]:
            for c in _push_round(codec, lanes, active):
                c.next += 1
                if progress:
                    progress(1)
    if progress:
        progress(sum(c.n_header for c in chains))
    return [c.payload() for c in chains]


def _starts_without_seed(codec) -> bool:
    """Whether a chain of ``codec`` is coded ``HEADERLESS``: one bits-back step over a prior that takes no bits
    back (one latent layer). With Bit-Swap's deeper hierarchies, the first item would pay for every layer in full,
    which costs more than the seed header. (A chunk of 2**31 items or more keeps version 1's form, as its prefix
    could read as version 1's.)"""
    return hasattr(codec, "push_first") and not hasattr(getattr(codec, "prior", None), "push_first")


def encode_chunk(model, items: np.ndarray, chunk: int = 0, side: dict[str, np.ndarray] | None = None,
                 progress=None, header_version: int | None = None) -> bytes:
    """Code ``items`` (N, *shape) as one chain; returns the chunk payload."""
    return encode_chunks(model, [(items, chunk, side)], progress=progress, header_version=header_version)[0]


@dataclass
class _Decoder:
    chunk: int
    n_items: int
    n_header: int
    lane: int
    out: np.ndarray
    next: int
    headerless: bool = False

    @property
    def first(self) -> bool:
        """Whether the next item to pop is a version-2 chain's first coded item (``pop_first``)."""
        return self.headerless and self.next == self.n_header


def _decoders(codec: Codec | None, payloads: list[tuple[bytes, int, int]], item_shape,
              dtype) -> tuple[AnsLanes, list[_Decoder]]:
    chains, messages = [], []
    for lane, (data, n_items, chunk) in enumerate(payloads):
        n_header, headerless, message = unpack(data, n_items, chunk)
        if codec is None and n_header != n_items:
            raise CorruptArchiveError(f"chunk {chunk}: the payload codes {n_items - n_header} items but the model "
                                      "codes none (all of a chunk's items are in its header)", chunk=chunk)
        if headerless and n_header < n_items and not hasattr(codec, "pop_first"):
            raise CorruptArchiveError(f"chunk {chunk}: the payload starts without a seed header, which only a "
                                      "bits-back item codec writes", chunk=chunk)
        try:
            message_words(message)  # checked here, so that an error names the chunk
        except CorruptArchiveError as exc:
            raise CorruptArchiveError(f"chunk {chunk}: {exc}", chunk=chunk) from None
        chains.append(_Decoder(chunk, n_items, n_header, lane, np.empty((n_items, *item_shape), dtype=dtype),
                               n_items - 1, headerless))
        messages.append(message)
    return AnsLanes.from_messages(messages), chains


def _pop_round(codec: Codec, lanes: AnsLanes, chains: list[_Decoder]) -> None:
    """Pop the last remaining item of every chain: the exact reverse of ``_push_round``."""
    firsts = [c for c in chains if c.first]
    if firsts and len(firsts) < len(chains):
        _pop_round(codec, lanes, [c for c in chains if not c.first])
        chains = firsts
    pop = codec.pop_first if firsts else codec.pop_lanes
    try:
        items, status = pop(lanes, np.array([c.lane for c in chains], dtype=np.int64))
    except CodingError:  # a symbol of probability 0 pushed back: the message is not what the encoder wrote
        if len(chains) == 1:
            raise _damaged(chains[0].chunk, "the chain met a symbol of probability 0") from None
        raise  # decode_chunks finds out which chunk
    if (status >= 0).any():
        p = int(np.flatnonzero(status >= 0)[0])
        raise _damaged(chains[p].chunk, f"the chain ran out of bits at symbol {status[p]} of an item")
    advance(len(chains))
    for j, c in enumerate(chains):
        c.out[c.next] = items[j]
        c.next -= 1


def _damaged(chunk: int, why: str) -> CorruptArchiveError:
    return CorruptArchiveError(f"chunk {chunk}: the coded data is damaged ({why})", chunk=chunk)


@single_threaded
def decode_chunks(model, payloads: list[tuple[bytes, int, int]], item_shape: tuple[int, ...],
                  dtype: np.dtype, progress=None) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Decode chunks ``(payload, item count, chunk index)`` in lockstep (see ``encode_chunks``). ``model`` None:
    the chunks were stored whole in their headers (format 2's "stored" scheme), no model needed."""
    codec = None if model is None else model.item_codec()
    lanes, chains = _decoders(codec, payloads, item_shape, dtype)
    try:
        with job(sum(c.next + 1 - c.n_header for c in chains)):
            while active := [c for c in chains if c.next >= c.n_header]:
                _pop_round(codec, lanes, active)
                if progress:
                    progress(len(active))
    except CodingError:
        for one in payloads:  # which chunk? Each alone raises the error that names it
            decode_chunks(model, [one], item_shape, dtype)
        raise
    results = []
    for c in chains:
        results.append(_finish(lanes, c, item_shape, dtype))
        if progress:
            progress(c.n_header)
    return results


def _finish(lanes: AnsLanes, c: _Decoder, item_shape, dtype) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pop the header off a chain whose coded items are all decoded; check that nothing is left and that the
    header agrees with the index (the end-of-chain integrity check). A ``HEADERLESS`` chain without header items
    has no header: its record describes it."""
    if c.headerless and not c.n_header:
        if not lanes.is_empty(c.lane):
            raise CorruptArchiveError(f"chunk {c.chunk}: bits are left over after decoding: the data is damaged",
                                      chunk=c.chunk)
        return c.out, {}
    (raw,), status = Bytes().pop_lanes(lanes, np.array([c.lane]))
    if status[0] >= 0:
        raise _damaged(c.chunk, f"the chain ran out of bits at byte {status[0]} of its header")
    header = parse_seed_header(raw, c.chunk, seed_header_limit(c.n_header, c.out[:1].nbytes))
    if not lanes.is_empty(c.lane):
        raise CorruptArchiveError(f"chunk {c.chunk}: bits are left over after decoding: the data is damaged",
                                  chunk=c.chunk)
    check_seed_header(header, c.n_items, c.n_header, item_shape, dtype, c.chunk)
    c.out[: c.n_header] = header.head
    return c.out, header.side


def decode_chunk(model, payload: bytes, n_items: int, item_shape: tuple[int, ...], dtype: np.dtype,
                 chunk: int = 0, progress=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return decode_chunks(model, [(payload, n_items, chunk)], item_shape, dtype, progress=progress)[0]


class ChunkDecoder:
    """One chunk decoded on demand, for random access. The chain pops its last item first, so item i needs
    only the items after it: ``down_to(i)`` decodes that far (half a chunk on average) and a later call goes on
    from where the last one stopped. Once every coded item is out, the header is popped and the end-of-chain
    integrity check runs (``result``); until then the payload checksum is the only guard."""

    def __init__(self, model, payload: bytes, n_items: int, item_shape: tuple[int, ...], dtype: np.dtype,
                 chunk: int = 0):
        self.item_shape, self.dtype = tuple(item_shape), np.dtype(dtype)
        self._codec = None if model is None else model.item_codec()
        self._lanes, (self._chain,) = _decoders(self._codec, [(payload, n_items, chunk)], item_shape, dtype)
        self._result = None

    @single_threaded
    def down_to(self, first: int) -> np.ndarray:
        """Items ``first ..`` to the end of the chunk (a view: do not modify)."""
        c = self._chain
        with job(c.next + 1 - max(first, c.n_header)):
            while c.next >= max(first, c.n_header):
                _pop_round(self._codec, self._lanes, [c])
        if c.next < c.n_header and self._result is None:
            self._result = _finish(self._lanes, c, self.item_shape, self.dtype)
        return c.out[first:]

    @property
    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """(items, side data) once the whole chunk is decoded and checked, else None."""
        return self._result

    @property
    def decoded_from(self) -> int:
        """The first item decoded so far: items ``decoded_from ..`` are out (the chunk's length before any)."""
        return self._chain.next + 1
