"""The Python API: ``compress`` (see ``bbarc.pipeline``), ``open`` and the random-access ``Archive``."""
from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from concurrent.futures import Executor
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from bbarc.formats.container import ArchiveReader
from bbarc.errors import CorruptArchiveError, ModelError, UsageError
from bbarc.formats.outputs import open_sink

from .chain import ChunkDecoder, decode_chunks
from .pipeline import FORMAT_NAME, auto_lockstep, codec_parameters, in_order, process_pool, raw_hash
from .metadata import ArchiveMetadata
from .registry import model_from_config


@dataclass(frozen=True)
class ChunkReport:
    index: int
    first_item: int
    item_count: int
    error: str | None


class Archive:
    """A bbarc archive opened for reading. ``len(a)``, ``a[i]``, ``a[i:j]``, ``a.chunk(k)``, ``a.metadata``.

    Decoding touches only the chunks an access needs; the most recently decoded chunks are cached. Safe to share
    between threads. The model is loaded on first decode, and must have the weights the archive was written with.
    """

    def __init__(self, path, cache_chunks: int = 2, recover: bool = False):
        self._args = (str(path), cache_chunks, recover)
        self.path = str(path)
        self._reader = ArchiveReader(path, recover=recover)
        meta = self._reader.metadata
        if meta.get("format") != FORMAT_NAME:
            raise CorruptArchiveError(f"{self.path}: the container holds no bbarc dataset metadata")
        self.item_shape = tuple(meta["item_shape"])
        self.dtype = np.dtype(meta["item_dtype"])
        self._cache: OrderedDict[int, tuple[np.ndarray, dict]] = OrderedDict()
        self._cache_size = cache_chunks
        self._tails: OrderedDict[int, ChunkDecoder] = OrderedDict()  # chunks decoded part of the way (random access)
        self._lock = threading.Lock()
        self._model = None

    # -- metadata ------------------------------------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        return self._reader.metadata

    @property
    def model_id(self) -> str:
        return self.metadata["model"]["id"]

    @property
    def chunk_count(self) -> int:
        return len(self._reader.chunks)

    @property
    def chunks(self):
        return self._reader.chunks

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.item_shape)

    def __len__(self) -> int:
        return self._reader.item_count

    def model(self):
        """The plugin model this archive needs, checked against the recorded weights hash and codec scheme."""
        if self._model is None:
            meta = ArchiveMetadata.from_json(self.metadata, self._reader.version)
            try:
                model = model_from_config(meta.model.config)
            except ModelError as exc:
                raise ModelError(f"{self.path} was written by {meta.model.distribution} {meta.model.version}: {exc}")
            ours, theirs = codec_parameters(), self.metadata["codec"]
            if ours != theirs:
                diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
                raise UsageError(f"{self.path} uses coding parameters this bbarc does not implement ({', '.join(diff)})")
            self._model = model
        return self._model

    # -- decoding ------------------------------------------------------------------------------------------
    def _decode(self, index: int) -> tuple[np.ndarray, dict]:
        return self._decode_many([index])[0]

    def _decode_many(self, indices: list[int]) -> list[tuple[np.ndarray, dict]]:
        """Decode chunks together (lockstep, sharing network calls), using and filling the cache."""
        with self._lock:
            cached = {i: self._cache[i] for i in indices if i in self._cache}
            for i in cached:
                self._cache.move_to_end(i)
        todo = [i for i in dict.fromkeys(indices) if i not in cached]
        if todo:
            entries = [self._reader.chunks[i] for i in todo]
            payloads = [(self._reader.read_chunk(i), e.item_count, i) for i, e in zip(todo, entries)]
            for i, decoded in zip(todo, decode_chunks(self.model(), payloads, self.item_shape, self.dtype)):
                cached[i] = self._keep(i, decoded)
        return [cached[i] for i in indices]

    def _keep(self, index: int, decoded: tuple[np.ndarray, dict]) -> tuple[np.ndarray, dict]:
        """Check a whole decoded chunk against the raw-content hash recorded at compression, then cache it."""
        items, side = decoded
        expected = self._reader.chunks[index].raw_hash
        if expected and raw_hash(items) != expected:
            raise CorruptArchiveError(
                f"{self.path}: chunk {index} decodes to content whose hash differs from the one recorded", chunk=index
            )
        items.setflags(write=False)
        with self._lock:
            self._tails.pop(index, None)
            self._cache[index] = (items, side)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return items, side

    def _item(self, chunk: int, j: int) -> np.ndarray:
        """Item j of a chunk: from the cache, or decoding only the chunk's items after it (chain.ChunkDecoder),
        resuming a partly decoded chunk; a chunk decoded to its start is checked and cached like any other."""
        with self._lock:
            if chunk in self._cache:
                self._cache.move_to_end(chunk)
                return self._cache[chunk][0][j].copy()
            decoder = self._tails.pop(chunk, None)
        if self.model().item_codec() is None:
            return self.chunk(chunk)[j].copy()
        if decoder is None:
            entry = self._reader.chunks[chunk]
            decoder = ChunkDecoder(self.model(), self._reader.read_chunk(chunk), entry.item_count, self.item_shape,
                                   self.dtype, chunk=chunk)
        item = decoder.down_to(j)[0].copy()
        if decoder.result is not None:
            self._keep(chunk, decoder.result)
        elif self._cache_size:
            with self._lock:
                self._tails[chunk] = decoder
                while len(self._tails) > self._cache_size:
                    self._tails.popitem(last=False)
        return item

    def chunk(self, index: int) -> np.ndarray:
        """All items of chunk ``index`` (read-only array)."""
        index = operator.index(index)
        if not 0 <= index < self.chunk_count:
            raise UsageError(f"chunk {index} does not exist: {self.path} has chunks 0..{self.chunk_count - 1}")
        return self._decode(index)[0]

    def side(self, index: int) -> dict[str, np.ndarray]:
        """Side data (e.g. ``labels``) stored in chunk ``index``'s header."""
        self.chunk(index)
        return self._decode(index)[1]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self[start:stop][::step].copy() if start < stop else np.empty((0, *self.item_shape), self.dtype)
            return self.read(start, stop)
        try:
            i = operator.index(key)
        except TypeError:
            raise UsageError(f"index archives with an int or a slice, not {type(key).__name__}") from None
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise UsageError(f"item {key} is out of range: {self.path} holds {len(self)} items")
        c = self._reader.chunk_for_item(i)
        return self._item(c, i - self._reader.chunks[c].first_item)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Items [start, stop), decoding only the chunks that hold them."""
        if not 0 <= start <= stop <= len(self):
            raise UsageError(f"range [{start}, {stop}) is outside {self.path}, which holds {len(self)} items")
        out = np.empty((stop - start, *self.item_shape), self.dtype)
        if start == stop:
            return out
        first, last = self._reader.chunk_for_item(start), self._reader.chunk_for_item(stop - 1)
        for c, (items, _) in zip(range(first, last + 1), self._decode_many(list(range(first, last + 1)))):
            entry = self._reader.chunks[c]
            lo, hi = max(start, entry.first_item), min(stop, entry.first_item + entry.item_count)
            out[lo - start : hi - start] = items[lo - entry.first_item : hi - entry.first_item]
        return out

    def __iter__(self):
        for c in range(self.chunk_count):
            yield from self.chunk(c)

    # -- whole-archive operations --------------------------------------------------------------------------
    def verify(self, deep: bool = False, progress=None) -> list[ChunkReport]:
        """Check every chunk's checksum; with ``deep`` also decode it and compare the raw-content hash."""
        reports = []
        for (index, error), entry in zip(self._reader.verify(), self._reader.chunks):
            if error is None and deep:
                try:
                    self._decode(index)
                except CorruptArchiveError as exc:
                    error = str(exc)
            reports.append(ChunkReport(index, entry.first_item, entry.item_count, error))
            if progress:
                progress(entry.item_count)
        return reports

    def extract(self, output, dataset: str | None = None, progress=None, workers: int = 1,
                executor: Executor | None = None, lockstep: int | None = None) -> None:
        """Decode everything into ``output`` (.npy, or HDF5 with ``file.h5:/key``); atomic like compression.
        ``workers``/``executor`` decode chunks in parallel (as in ``compress``); this process writes in order."""
        stored = np.dtype(self.metadata.get("source_dtype", self.dtype))
        with ExitStack() as resources:
            sink = resources.enter_context(open_sink(output, self.shape, stored, dataset=dataset))
            pool = executor or (resources.enter_context(process_pool(workers)) if workers > 1 else None)
            item_bytes = int(np.prod(self.item_shape, dtype=np.int64)) * self.dtype.itemsize
            lockstep = lockstep or auto_lockstep(self.metadata["chunk_size"], item_bytes)
            groups = [list(range(c, min(c + lockstep, self.chunk_count))) for c in range(0, self.chunk_count, lockstep)]
            if pool is None:
                decoded = ((g, None, [items for items, _ in self._decode_many(g)]) for g in groups)
            else:
                self.model()  # fail here, before any work, if the model or its weights are wrong
                decoded = in_order(pool, ((g, None, (decode_job, self._args, g)) for g in groups), 2 * max(workers, 2))
            for group, _, chunks in decoded:
                for c, items in zip(group, chunks):
                    entry = self._reader.chunks[c]
                    sink.write(entry.first_item, items)
                    if progress:
                        progress(entry.item_count)
            sink.close()

    def close(self) -> None:
        self._reader.close()

    def __getstate__(self):
        return self._args  # e.g. a DataLoader worker: reopen the file instead of copying state

    def __setstate__(self, args) -> None:
        self.__init__(*args)

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Archive({self.path!r}, items={len(self)}, chunks={self.chunk_count}, model={self.model_id!r})"


def decode_job(archive_args: tuple, indices: list[int]) -> list[np.ndarray]:
    """A group of chunks, in a worker process: each worker keeps its own open archive."""
    archive = _worker_archives.get(archive_args)
    if archive is None:
        path, _, recover = archive_args
        archive = _worker_archives[archive_args] = Archive(path, cache_chunks=0, recover=recover)
    return [items for items, _ in archive._decode_many(indices)]


_worker_archives: dict[tuple, Archive] = {}


def open(path, cache_chunks: int = 2, recover: bool = False) -> Archive:  # noqa: A001 - mirrors builtins.open
    """Open an archive for random access."""
    return Archive(path, cache_chunks=cache_chunks, recover=recover)


def decompress(archive_path, output, dataset: str | None = None, progress=None, workers: int = 1,
               executor: Executor | None = None) -> Archive:
    with open(archive_path) as archive:
        archive.extract(output, dataset=dataset, progress=progress, workers=workers, executor=executor)
        return archive
