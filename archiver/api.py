"""The Python API: ``compress`` (see ``bbarc.pipeline``), ``open`` and the random-access ``Archive``."""
from __future__ import annotations

import hashlib
import json
import operator
import os
import time
from concurrent.futures import Executor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from bbarc.formats.container import ArchiveReader
from bbarc.errors import BbarcError, CorruptArchiveError, ModelError, UsageError
from bbarc.formats.layout import RECORD2_HEADER_SIZE
from bbarc.formats.layout2 import SCHEME_BITS_BACK, SCHEME_STORED
from bbarc.formats.outputs import open_sink

from .access import ChunkCache, DecodedChunk, DecodeStats
from .execution import auto_lockstep, lockstep_groups, run_ordered
from .metadata import ArchiveMetadata


@dataclass(frozen=True)
class ChunkReport:
    index: int
    first_item: int
    item_count: int
    error: str | None


@dataclass(frozen=True)
class DecompressResult:
    """What ``decompress`` (and ``Archive.extract``) wrote."""

    archive: str
    output: str
    items: int
    chunks: int
    seconds: float

    def as_dict(self) -> dict:
        return dict(archive=self.archive, output=self.output, items=self.items, chunks=self.chunks,
                    seconds=round(self.seconds, 3))


class Archive:
    """A bbarc archive opened for reading. ``len(a)``, ``a[i]``, ``a[i:j:k]``, ``a.chunk(k)``, ``a.metadata``.

    Decoding touches only the chunks an access needs; the ``cache_chunks`` most recently decoded chunks are
    cached (``bbarc.access.ChunkCache``; ``a.stats`` counts the decoding done). Safe to share between threads.
    The model is loaded on first decode, and must have the weights the archive was written with.
    """

    def __init__(self, path, cache_chunks: int = 2, recover: bool = False):
        if not isinstance(cache_chunks, int) or cache_chunks < 0:
            raise UsageError(f"cache_chunks must be an integer >= 0, got {cache_chunks!r}")
        self._args = (str(path), cache_chunks, recover)
        self.path = str(path)
        self._reader = ArchiveReader(path, recover=recover)
        try:
            self.metadata = ArchiveMetadata.from_json(self._reader.metadata, self._reader.version)
        except CorruptArchiveError as exc:
            self._reader.close()
            raise CorruptArchiveError(f"{self.path}: {exc}") from None
        self.item_shape, self.dtype = self.metadata.item_shape, self.metadata.dtype
        check_chunks(self._reader, self.metadata, self.path)
        # Chunks decoded together by reads and extraction (bounded memory, shared network calls).
        self._lockstep = auto_lockstep(self.metadata.chunk_size, self.metadata.item_spec.item_bytes)
        self._cache = ChunkCache(self._reader, self.model, self.item_shape, self.dtype, cache_chunks, self.path)
        self._model = None

    # -- metadata (``self.metadata``: a typed ``bbarc.metadata.ArchiveMetadata``) --------------------------
    @property
    def model_id(self) -> str:
        return self.metadata.model.id

    @property
    def chunk_count(self) -> int:
        return len(self._reader.chunks)

    @property
    def chunks(self):
        return self._reader.chunks

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.item_shape)

    @property
    def stats(self) -> DecodeStats:
        """The decoding done since opening (whole chunks, items, cache hits), as a snapshot."""
        return self._cache.snapshot()

    def __len__(self) -> int:
        return self._reader.item_count

    def model(self):
        """The plugin model this archive needs (see ``archive_model``), loaded once."""
        if self._model is None:
            self._model = archive_model(self.metadata, self.path)
        return self._model

    # -- decoding ------------------------------------------------------------------------------------------
    def decode_chunks(self, indices) -> list[DecodedChunk]:
        """Chunks ``indices`` decoded together (in lockstep, sharing network calls), each as ``(items, side)``;
        cached ones are not decoded again. The caller bounds how many: their items all sit in memory."""
        indices = [self._chunk_index(i) for i in indices]
        return self._cache.chunks(indices)

    def chunk(self, index: int) -> np.ndarray:
        """All items of chunk ``index`` (read-only array)."""
        return self.decode_chunks([index])[0].items

    def side(self, index: int) -> dict[str, np.ndarray]:
        """Side data (e.g. ``labels``) of chunk ``index``: read from the record (format v2) without decoding the
        chain, or, in v1 archives, from the chunk's seed header."""
        if self._reader.version >= 2:
            return self._reader.read_side(self._chunk_index(index))
        return self.decode_chunks([index])[0].side

    @property
    def labels(self) -> np.ndarray | None:
        """Every item's label (the side data ``labels`` stored by ``compress(labels=...)``), or None if the archive
        stores none; ``side_data`` reads the labels of some items only. Format v2 keeps them in each chunk's record,
        outside the chain, so this reads a few bytes per chunk and decodes nothing. A format v1 archive keeps them
        in each chain's seed header: there this decodes every chunk, which costs as much as decoding the items."""
        return self.side_data("labels") if "labels" in self.metadata.side else None

    def side_data(self, name: str = "labels", items=None):
        """Side data ``name`` of ``items``: None for every item (an array), an int for one item (its value) or a
        slice (an array), read from the chunks that hold them only; decoding-free in format v2, not in v1 (see
        ``labels``). UsageError if the archive stores no side data of that name."""
        return read_side_data(self, name, items)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return self._cache.take(range(*key.indices(len(self))), self._lockstep)
        try:
            i = operator.index(key)
        except TypeError:
            raise UsageError(f"index archives with an int or a slice, not {type(key).__name__}") from None
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise UsageError(f"item {key} is out of range: {self.path} holds {len(self)} items")
        c = self._reader.chunk_for_item(i)
        return self._cache.item(c, i - self._reader.chunks[c].first_item)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Items [start, stop), decoding only the chunks that hold them."""
        if not 0 <= start <= stop <= len(self):
            raise UsageError(f"range [{start}, {stop}) is outside {self.path}, which holds {len(self)} items")
        return self._cache.take(range(start, stop), self._lockstep)

    def __iter__(self):
        for c in range(self.chunk_count):
            yield from self.chunk(c)

    def _chunk_index(self, index) -> int:
        try:
            i = operator.index(index)
        except TypeError:
            raise UsageError(f"chunk indices are integers, not {type(index).__name__}") from None
        if not 0 <= i < self.chunk_count:
            raise UsageError(f"chunk {index} does not exist: {self.path} has chunks 0..{self.chunk_count - 1}")
        return i

    # -- whole-archive operations --------------------------------------------------------------------------
    def verify(self, deep: bool = False, progress=None) -> list[ChunkReport]:
        """Check every chunk's checksum; with ``deep`` also decode it and compare the raw-content hash.
        ``progress(advance_items, total_items)``: optional callback."""
        reports = []
        for (index, error), entry in zip(self._reader.verify(), self._reader.chunks):
            if error is None and deep:
                try:
                    self.decode_chunks([index])
                except CorruptArchiveError as exc:
                    error = str(exc)
            reports.append(ChunkReport(index, entry.first_item, entry.item_count, error))
            if progress:
                progress(entry.item_count, len(self))
        return reports

    def extract(self, output, dataset: str | None = None, progress=None, workers: int = 1,
                executor: Executor | None = None, lockstep: int | None = None, overwrite: bool = False,
                labels=None) -> DecompressResult:
        """Decode everything into ``output`` (.npy, or HDF5 with ``file.h5:/key``); atomic like compression.
        ``workers``/``executor``/``lockstep``/``progress(advance_items, total_items)`` as in ``compress``: chunks
        are decoded in parallel, and this process writes them in order. An existing output is replaced only
        with ``overwrite``; ``labels``: also write the stored labels there (.npy or HDF5)."""
        return extract(self, output, dataset=dataset, progress=progress, workers=workers, executor=executor,
                       lockstep=lockstep, overwrite=overwrite, labels=labels)

    def close(self) -> None:
        self._reader.close()

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the archive's content (see ``archive_fingerprint``): a process that reopens the path
        compares it, so that a file replaced meanwhile is refused instead of read as if it were this one."""
        return archive_fingerprint(self._reader)

    def check_fingerprint(self, expected: str) -> None:
        """CorruptArchiveError (and closed) unless this is the archive whose fingerprint is ``expected``."""
        if self.fingerprint != expected:
            self.close()
            raise CorruptArchiveError(
                f"{self.path} changed since it was opened (replaced or rewritten): reopened here it is another "
                f"archive, so its items would not be the ones asked for; open it again")

    def __getstate__(self):
        # e.g. a DataLoader worker: reopen the file instead of copying state, and check it is the same archive
        return {"args": self._args, "fingerprint": self.fingerprint}

    def __setstate__(self, state) -> None:
        self.__init__(*state["args"])
        self.check_fingerprint(state["fingerprint"])

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Archive({self.path!r}, items={len(self)}, chunks={self.chunk_count}, model={self.model_id!r})"


CHUNK_SCHEMES = (SCHEME_BITS_BACK, SCHEME_STORED)


def archive_fingerprint(reader: ArchiveReader) -> str:
    """A digest of what identifies an archive's content without reading its payloads: the metadata and every
    index entry, whose checksums cover the payloads. Chunks found by a recovery scan have no checksums in an
    index, so their record headers (which hold the payload's crc32) go in instead."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([reader.version, reader.metadata], sort_keys=True).encode())
    for e in reader.chunks:
        digest.update(repr((e.offset, e.length, e.first_item, e.item_count, e.checksum, e.raw_hash,
                            e.side_checksum)).encode())
        if e.checksum is None:
            digest.update(reader._pread(e.desc_length + RECORD2_HEADER_SIZE, e.offset))
    for a in reader.attachments:
        digest.update(repr((a.name, a.offset, a.length, a.checksum)).encode())
    return digest.hexdigest()


def read_side_data(archive: Archive, name: str, items=None):
    """``Archive.side_data``: the chunks holding ``items`` are read in order (v1: decoded in lockstep groups),
    and each one's run of wanted positions taken from its side array."""
    if name not in archive.metadata.side:
        stored = ", ".join(map(repr, archive.metadata.side)) or "none"
        raise UsageError(f"{archive.path} stores no side data named {name!r} (it stores: {stored}; labels are "
                         f"stored by compressing with --labels)")
    n = len(archive)
    if items is None or isinstance(items, slice):
        positions = range(n) if items is None else range(*items.indices(n))
    else:
        try:
            i = operator.index(items)
        except TypeError:
            raise UsageError(f"select items with an int, a slice or None, not {type(items).__name__}") from None
        if not -n <= i < n:
            raise UsageError(f"item {items} is out of range: {archive.path} holds {n} items")
        return read_side_data(archive, name, slice(i % n, i % n + 1))[0]
    firsts = np.array([c.first_item for c in archive.chunks], dtype=np.int64)
    pos = np.arange(positions.start, positions.stop, positions.step, dtype=np.int64)
    chunk_of = np.searchsorted(firsts, pos, side="right") - 1
    # A range is monotonic, so the positions of each chunk form one run of the output.
    starts = np.flatnonzero(np.diff(chunk_of, prepend=-1)).tolist()
    wanted = chunk_of[starts].tolist()
    if archive._reader.version >= 2:
        arrays = {c: archive._reader.read_side(c)[name] for c in wanted}
    else:
        arrays = {}
        for group in lockstep_groups(wanted, archive._lockstep):
            arrays.update((c, d.side[name]) for c, d in zip(group, archive.decode_chunks(group)))
    if not wanted:  # an empty selection: the dtype and item shape of chunk 0's array
        first = archive.side(0)[name] if archive.chunk_count else np.zeros(0, np.int64)
        return first[:0]
    return np.concatenate([arrays[c][pos[a:b] - firsts[c]] for c, a, b in zip(wanted, starts, starts[1:] + [len(pos)])])


def check_chunks(reader: ArchiveReader, meta: ArchiveMetadata, path: str) -> None:
    """Validate the index against the metadata at open, so that no access meets a chunk this bbarc cannot
    decode: every chunk's coding scheme is one this bbarc implements and its items have the archive's shape."""
    try:
        meta.check_index(reader.chunks, reader.recovered)
        for entry in reader.chunks:
            if entry.version >= 2 and entry.scheme not in CHUNK_SCHEMES:
                raise UsageError(f"{path}: chunk {entry.index} is coded with scheme {entry.scheme!r}, which this bbarc "
                                 f"does not implement ({', '.join(CHUNK_SCHEMES)}); a newer bbarc may read it")
            if entry.version >= 2 and any(run.shape != meta.item_shape for run in entry.shapes):
                raise CorruptArchiveError(f"{path}: chunk {entry.index} holds items of another shape than the "
                                          f"archive's {meta.item_shape}")
    except BbarcError:
        reader.close()
        raise


def archive_model(meta: ArchiveMetadata, path: str):
    """The model an archive needs, rebuilt from its recorded config, once its coding scheme is checked."""
    from .chain import decodable_parameters  # here, with the registry: opening an archive loads neither
    from .registry import model_from_config

    meta.coding.check_supported(decodable_parameters(meta.coding.params), path)
    try:
        return model_from_config(meta.model.config)
    except ModelError as exc:
        raise ModelError(f"{path} was written by {meta.model.distribution} {meta.model.version}: {exc}") from None


def extract(archive: Archive, output, dataset: str | None = None, progress=None, workers: int = 1,
            executor: Executor | None = None, lockstep: int | None = None, overwrite: bool = False,
            labels=None) -> DecompressResult:
    """``Archive.extract``: one lockstep group of chunks at a time, decoded here or by workers
    (``execution.run_ordered``, shared with compression), written in order by this process. The archive itself
    is never written over, whatever ``overwrite`` says."""
    started = time.perf_counter()
    stored = archive.metadata.source_dtype
    if labels is not None and "labels" not in archive.metadata.side:
        raise UsageError(f"{archive.path} stores no labels (it was compressed without --labels)")
    if workers > 1 or executor is not None:
        archive.model()  # fail here, before any work, if the model or its weights are wrong
    with ExitStack() as resources:
        sink = resources.enter_context(open_sink(output, archive.shape, stored, dataset=dataset, overwrite=overwrite,
                                                 inputs=[archive.path]))
        label_sink = None
        if labels is not None:
            first = archive.side(0)["labels"]
            label_sink = resources.enter_context(open_sink(labels, (len(archive), *first.shape[1:]), first.dtype,
                                                           overwrite=overwrite, inputs=[archive.path, sink.path]))
            if os.path.realpath(label_sink.path) == os.path.realpath(sink.path):
                raise UsageError(f"items and labels would both be written to {sink.path}; give the labels "
                                 f"another file")
        decoded = resources.enter_context(closing(run_ordered(
            lockstep_groups(range(archive.chunk_count), lockstep if lockstep is not None else auto_lockstep(
                archive.metadata.chunk_size, archive.metadata.item_spec.item_bytes, archive.chunk_count,
                workers if executor is None else max(workers, 2))),
            local=lambda group, tick: [items for items, _ in archive.decode_chunks(group)],
            remote=lambda group: (decode_job, archive._args, archive.fingerprint, group),
            size=lambda group: sum(archive.chunks[c].item_count for c in group),
            workers=workers, executor=executor, progress=(lambda k: progress(k, len(archive))) if progress else None,
        )))
        for group, chunks in decoded:
            for c, items in zip(group, chunks):
                sink.write(archive.chunks[c].first_item, items)
                if label_sink is not None:
                    label_sink.write(archive.chunks[c].first_item, archive.side(c)["labels"])
        sink.close()
        if label_sink is not None:
            label_sink.close()
    return DecompressResult(archive.path, sink.description, len(archive), archive.chunk_count,
                            time.perf_counter() - started)


def decode_job(archive_args: tuple, fingerprint: str, indices: list[int]) -> list[np.ndarray]:
    """A group of chunks, in a worker process: each worker keeps its own open archive, opened from the path,
    and checks that it is the archive the caller opened (the file may have been replaced in between)."""
    archive = _worker_archives.get(archive_args)
    if archive is not None and archive.fingerprint != fingerprint:
        archive.close()  # the caller reopened a replaced file: this worker's copy is stale
        del _worker_archives[archive_args]
        archive = None
    if archive is None:
        path, _, recover = archive_args
        archive = Archive(path, cache_chunks=0, recover=recover)
        archive.check_fingerprint(fingerprint)
        _worker_archives[archive_args] = archive
    return [items for items, _ in archive.decode_chunks(indices)]


_worker_archives: dict[tuple, Archive] = {}


def open(path, cache_chunks: int = 2, recover: bool = False) -> Archive:  # noqa: A001 - mirrors builtins.open
    """Open an archive for random access (close it, or use ``with``)."""
    return Archive(path, cache_chunks=cache_chunks, recover=recover)


def decompress(archive_path, output, dataset: str | None = None, progress=None, workers: int = 1,
               executor: Executor | None = None, lockstep: int | None = None, overwrite: bool = False,
               labels=None) -> DecompressResult:
    """Decode the whole archive ``archive_path`` into ``output`` (see ``Archive.extract``, also for
    ``overwrite`` and ``labels``); the archive is closed again when this returns, so the result says what was
    written, not an open ``Archive``."""
    with open(archive_path) as archive:
        return archive.extract(output, dataset=dataset, progress=progress, workers=workers, executor=executor,
                               lockstep=lockstep, overwrite=overwrite, labels=labels)
