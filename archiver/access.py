"""Random access to an archive's chunks: decoding on demand, with a cache of whole decoded chunks and of chunks
decoded part of the way (their tails), shared safely between threads."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from bbarc.errors import CorruptArchiveError
from bbarc.formats.layout2 import SCHEME_STORED
from bbarc.formats.container import ArchiveReader

from .execution import lockstep_groups
from .payload import raw_hash

if TYPE_CHECKING:
    from .chain import ChunkDecoder


class DecodedChunk(NamedTuple):
    """One whole chunk: its items (read-only) and its side data (e.g. ``labels``)."""

    items: np.ndarray
    side: dict[str, np.ndarray]


@dataclass
class DecodeStats:
    """The decoding work an archive has done since it was opened: to tune ``cache_chunks`` and access patterns.

    ``chunks``: whole chunks decoded (each checked against its recorded content hash); ``items``: items decoded,
    by whole chunks and by partial (random-access) decoding together; ``cache_hits``: chunk look-ups served from
    the cache without decoding."""

    chunks: int = 0
    items: int = 0
    cache_hits: int = 0


class _Tail:
    """A chunk decoded from its end down to item ``low``; the decoder goes on from there."""

    def __init__(self, decoder: ChunkDecoder, n_items: int):
        self.decoder, self.low = decoder, n_items


class ChunkCache:
    """Decodes chunks of one archive on demand, keeping the ``size`` most recently used whole chunks and up to
    ``size`` partly decoded ones. ``model()`` is called (and may raise) only when something must be decoded."""

    def __init__(self, reader: ArchiveReader, model: Callable[[], object], item_shape: tuple[int, ...],
                 dtype: np.dtype, size: int, name: str):
        self._reader, self._model, self._name = reader, model, name
        self._item_shape, self._dtype, self._size = tuple(item_shape), np.dtype(dtype), size
        self._first_items = np.array([c.first_item for c in reader.chunks], dtype=np.int64)
        self._counts = np.array([c.item_count for c in reader.chunks], dtype=np.int64)
        self._whole: OrderedDict[int, DecodedChunk] = OrderedDict()
        self._tails: OrderedDict[int, _Tail] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = DecodeStats()

    def chunks(self, indices: list[int]) -> list[DecodedChunk]:
        """Whole chunks, from the cache or decoded together (lockstep, sharing network calls), then cached."""
        with self._lock:
            found = {i: self._whole[i] for i in indices if i in self._whole}
            for i in found:
                self._whole.move_to_end(i)
            self._stats.cache_hits += len(found)
        todo = [i for i in dict.fromkeys(indices) if i not in found]
        for stored in (True, False):  # dispatch on each chunk's coding scheme; stored chunks need no model
            group = [i for i in todo if self._stored(i) == stored]
            if group:
                from .chain import decode_chunks  # here: opening an archive (`bbarc info`) loads no coder

                payloads = [(self._reader.read_chunk(i), self._reader.chunks[i].item_count, i) for i in group]
                model = None if stored else self._model()
                for i, decoded in zip(group, decode_chunks(model, payloads, self._item_shape, self._dtype)):
                    found[i] = self._keep(i, *decoded)
        return [found[i] for i in indices]

    def _stored(self, chunk: int) -> bool:
        """Whether a chunk holds all its items in its seed header: format 2's "stored" scheme, or any chunk of a
        model-free archive."""
        entry = self._reader.chunks[chunk]
        if entry.version >= 2:
            return entry.scheme == SCHEME_STORED
        return self._model().item_codec() is None

    def snapshot(self) -> DecodeStats:
        with self._lock:
            return replace(self._stats)

    def take(self, positions: range, lockstep: int) -> np.ndarray:
        """The items at ``positions`` (any step, negative too), decoding each chunk that holds one of them once,
        ``lockstep`` chunks at a time."""
        out = np.empty((len(positions), *self._item_shape), self._dtype)
        if not positions:
            return out
        pos = np.arange(positions.start, positions.stop, positions.step, dtype=np.int64)
        chunk_of = np.searchsorted(self._first_items, pos, side="right") - 1
        if self._reader.recovered:  # a recovery scan may have skipped damaged records: their items are gone
            for p in pos[(chunk_of < 0) | (pos >= self._first_items[chunk_of] + self._counts[chunk_of])][:1]:
                self._reader.chunk_for_item(int(p))  # raises, naming the item and what to do
        # A range is monotonic, so the items of each chunk form one run of the output.
        starts = np.flatnonzero(np.diff(chunk_of, prepend=-1))
        runs = list(zip(starts.tolist(), np.append(starts[1:], len(pos)).tolist()))
        for group in lockstep_groups(runs, lockstep):
            decoded = self.chunks([int(chunk_of[a]) for a, _ in group])
            for (a, b), (items, _) in zip(group, decoded):
                out[a:b] = items[pos[a:b] - self._first_items[chunk_of[a]]]
        return out

    def item(self, chunk: int, j: int) -> np.ndarray:
        """Item ``j`` of a chunk (a copy): from the cache, or decoding only the chunk's items after it
        (``chain.ChunkDecoder``), resuming a partly decoded chunk; a chunk decoded to its start is checked and
        cached like any other."""
        with self._lock:
            if chunk in self._whole:
                self._whole.move_to_end(chunk)
                self._stats.cache_hits += 1
                return self._whole[chunk].items[j].copy()
            tail = self._tails.pop(chunk, None)
        if self._stored(chunk):  # the whole chunk sits in its header: nothing to decode part of the way
            return self.chunks([chunk])[0].items[j].copy()
        model = self._model()
        if tail is None:
            from .chain import ChunkDecoder

            entry = self._reader.chunks[chunk]
            tail = _Tail(ChunkDecoder(model, self._reader.read_chunk(chunk), entry.item_count, self._item_shape,
                                      self._dtype, chunk=chunk), entry.item_count)
        item = tail.decoder.down_to(j)[0].copy()
        result = tail.decoder.result
        low = 0 if result is not None else min(j, tail.low)
        with self._lock:
            self._stats.items += tail.low - low
        tail.low = low
        if result is not None:
            self._keep(chunk, *result, counted=True)
        elif self._size:
            with self._lock:
                self._tails[chunk] = tail
                while len(self._tails) > self._size:
                    self._tails.popitem(last=False)
        return item

    def _keep(self, index: int, items: np.ndarray, side: dict, counted: bool = False) -> DecodedChunk:
        """Check a whole decoded chunk against the raw-content hash recorded at compression, then cache it.
        ``counted``: its items were already counted (decoded part by part)."""
        expected = self._reader.chunks[index].raw_hash
        if expected and raw_hash(items) != expected:
            raise CorruptArchiveError(
                f"{self._name}: chunk {index} decodes to content whose hash differs from the one recorded", chunk=index
            )
        items.setflags(write=False)
        decoded = DecodedChunk(items, side or self._reader.read_side(index))  # v2 keeps side data outside the chain
        with self._lock:
            self._stats.chunks += 1
            self._stats.items += 0 if counted else len(items)
            self._tails.pop(index, None)
            if self._size:
                self._whole[index] = decoded
                while len(self._whole) > self._size:
                    self._whole.popitem(last=False)
        return decoded
