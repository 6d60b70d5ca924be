"""The Python API: ``compress`` (see ``archiver.pipeline``), ``open`` and the random-access ``Archive``."""
from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from concurrent.futures import Executor
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from formats.container import ArchiveReader
from formats.errors import CorruptArchiveError, ModelError, UsageError
from formats.outputs import open_sink

from .chain import decode_chunk
from .pipeline import FORMAT_NAME, codec_parameters, in_order, process_pool, raw_hash
from .plugins import get_model


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
            want = self.metadata["model"]
            model = get_model(want["id"])
            if model.weights_sha256() != want["weights_sha256"]:
                raise ModelError(
                    f"{self.path} was written with model {want['id']!r} weights sha256 {want['weights_sha256'][:16]}…, "
                    f"the installed plugin ({want.get('distribution')}) has {model.weights_sha256()[:16]}…: install "
                    f"the plugin version that wrote it ({want.get('distribution')} {want.get('version')})"
                )
            ours, theirs = codec_parameters(), self.metadata["codec"]
            if ours != theirs:
                diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
                raise UsageError(f"{self.path} uses coding parameters this bbarc does not implement ({', '.join(diff)})")
            self._model = model
        return self._model

    # -- decoding ------------------------------------------------------------------------------------------
    def _decode(self, index: int) -> tuple[np.ndarray, dict]:
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
        entry = self._reader.chunks[index]
        payload = self._reader.read_chunk(index)
        items, side = decode_chunk(self.model(), payload, entry.item_count, self.item_shape, self.dtype, chunk=index)
        if entry.raw_hash and raw_hash(items) != entry.raw_hash:
            raise CorruptArchiveError(
                f"{self.path}: chunk {index} decodes to content whose hash differs from the one recorded", chunk=index
            )
        items.setflags(write=False)
        with self._lock:
            self._cache[index] = (items, side)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return items, side

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
        return self.chunk(c)[i - self._reader.chunks[c].first_item].copy()

    def read(self, start: int, stop: int) -> np.ndarray:
        """Items [start, stop), decoding only the chunks that hold them."""
        if not 0 <= start <= stop <= len(self):
            raise UsageError(f"range [{start}, {stop}) is outside {self.path}, which holds {len(self)} items")
        out = np.empty((stop - start, *self.item_shape), self.dtype)
        pos = start
        while pos < stop:
            c = self._reader.chunk_for_item(pos)
            entry = self._reader.chunks[c]
            take = min(stop, entry.first_item + entry.item_count) - pos
            out[pos - start : pos - start + take] = self.chunk(c)[pos - entry.first_item : pos - entry.first_item + take]
            pos += take
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
                executor: Executor | None = None) -> None:
        """Decode everything into ``output`` (.npy, or HDF5 with ``file.h5:/key``); atomic like compression.
        ``workers``/``executor`` decode chunks in parallel (as in ``compress``); this process writes in order."""
        stored = np.dtype(self.metadata.get("source_dtype", self.dtype))
        with ExitStack() as resources:
            sink = resources.enter_context(open_sink(output, self.shape, stored, dataset=dataset))
            pool = executor or (resources.enter_context(process_pool(workers)) if workers > 1 else None)
            if pool is None:
                decoded = ((e.first_item, e, self.chunk(c)) for c, e in enumerate(self._reader.chunks))
            else:
                self.model()  # fail here, before any work, if the model or its weights are wrong
                jobs = ((e.first_item, e, (decode_job, self._args, c)) for c, e in enumerate(self._reader.chunks))
                decoded = in_order(pool, jobs, 2 * max(workers, 2))
            for first, entry, items in decoded:
                sink.write(first, items)
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


def decode_job(archive_args: tuple, index: int) -> np.ndarray:
    """One chunk, in a worker process: each worker keeps its own open archive."""
    archive = _worker_archives.get(archive_args)
    if archive is None:
        archive = _worker_archives[archive_args] = Archive(*archive_args)
    return archive.chunk(index)


_worker_archives: dict[tuple, Archive] = {}


def open(path, cache_chunks: int = 2, recover: bool = False) -> Archive:  # noqa: A001 - mirrors builtins.open
    """Open an archive for random access."""
    return Archive(path, cache_chunks=cache_chunks, recover=recover)


def decompress(archive_path, output, dataset: str | None = None, progress=None, workers: int = 1,
               executor: Executor | None = None) -> Archive:
    with open(archive_path) as archive:
        archive.extract(output, dataset=dataset, progress=progress, workers=workers, executor=executor)
        return archive
