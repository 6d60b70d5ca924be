"""Streaming compression and decompression: source -> chunks -> chains -> archive, and back.

Memory stays bounded by one chunk (plus the model): items are read from the source chunk by chunk, and the
archive is written as it goes (``bbarc.formats.container`` finalises it atomically, so a failure leaves nothing).
"""
from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from bbarc.formats.container import ArchiveWriter
from bbarc.errors import UsageError
from bbarc.formats.inputs import open_source

from . import chain
from .chain import encode_chunks
from .payload import ZSTD_LEVEL, raw_hash
from .registry import get_model, model_entry

FORMAT_NAME = "bbarc"
# Items per chunk unless asked: each chunk is one chain (~1,600 bits of overhead, 0.55 % of 256 MNIST images),
# and reading an item decodes the items after it in its chunk, so smaller chunks mean faster random access.
DEFAULT_CHUNK = 256


def bbarc_version() -> str:
    try:
        return version("bbarc")
    except PackageNotFoundError:
        return "unknown"


def codec_parameters() -> dict:
    """What archives record: ``chain.codec_parameters`` (the codec's identity) plus the encoder's zstd level."""
    return dict(chain.codec_parameters(), header_zstd_level=ZSTD_LEVEL)


@dataclass(frozen=True)
class CompressResult:
    path: str
    items: int
    chunks: int
    item_shape: tuple[int, ...]
    dtype: str
    raw_bytes: int
    archive_bytes: int
    seconds: float

    @property
    def bits_per_dim(self) -> float:
        dims = self.raw_bytes / np.dtype(self.dtype).itemsize
        return 8 * self.archive_bytes / dims

    def as_dict(self) -> dict:
        return dict(path=self.path, items=self.items, chunks=self.chunks, item_shape=list(self.item_shape),
                    dtype=self.dtype, raw_bytes=self.raw_bytes, archive_bytes=self.archive_bytes,
                    bits_per_dim=round(self.bits_per_dim, 5), seconds=round(self.seconds, 3))


def compress(source, path, model: str = "mnist-vae", chunk_size: int = DEFAULT_CHUNK, dataset: str | None = None,
             labels=None, progress=None, workers: int = 1, executor: Executor | None = None,
             lockstep: int | None = None) -> CompressResult:
    """Compress ``source`` (path, ``file.h5:/key``, or array) into the archive ``path``.

    ``labels``: optional per-item side data (array or source spec) stored in each chunk's header.
    ``progress(advance_items, total_items)``: optional callback.
    ``workers``: encode chunks in this many processes; or pass any ``concurrent.futures.Executor`` (a Dask
    ``client.get_executor()`` works). Chunks are read, and written in order, by this process alone; at most
    ``2 * workers`` chunks are in flight, so memory stays bounded.
    ``lockstep``: chunks coded together, sharing network calls (see ``chain.encode_chunks``); the bytes do not
    depend on it. By default as many as fit in ``LOCKSTEP_BYTES`` of items (1 to 64).
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise UsageError(f"chunk size must be a positive integer, got {chunk_size!r}")
    started = time.perf_counter()
    m = get_model(model)
    entry = model_entry(model)
    with ExitStack() as resources:
        src = resources.enter_context(open_source(source, dataset))
        n = len(src)
        if n == 0:
            raise UsageError(f"{src.description} holds no items: nothing to compress")
        side_src = resources.enter_context(open_source(labels)) if labels is not None else None
        if side_src is not None and len(side_src) != n:
            raise UsageError(f"labels hold {len(side_src)} entries but {src.description} holds {n} items")
        m.check_items(src.read(0, 1))
        metadata = dict(
            format=FORMAT_NAME, writer=f"bbarc {bbarc_version()}", source=src.description,
            item_shape=list(src.item_shape), item_dtype=np.dtype(src.dtype).str, item_count=n, chunk_size=chunk_size,
            source_dtype=np.dtype(src.stored_dtype).str,  # byte order of the input, reproduced on decompression
            model=dict(id=m.id, plugin=entry.plugin, distribution=entry.distribution, version=entry.version,
                       weights_sha256=m.weights_sha256(), **m.info()),
            codec=codec_parameters(), side=["labels"] if side_src is not None else [],
        )
        item_bytes = int(np.prod(src.item_shape, dtype=np.int64)) * np.dtype(src.dtype).itemsize
        lockstep = lockstep or auto_lockstep(chunk_size, item_bytes)

        def groups():
            """Up to ``lockstep`` consecutive chunks at a time: (index, start, items, side) each."""
            group = []
            for index, start in enumerate(range(0, n, chunk_size)):
                stop = min(start + chunk_size, n)
                items = src.read(start, stop)
                m.check_items(items)
                group.append((index, start, items, {"labels": side_src.read(start, stop)} if side_src else {}))
                if len(group) == max(lockstep, 1) or stop == n:
                    yield group
                    group = []

        def write(group, payloads) -> None:
            for (_, start, items, _), payload in zip(group, payloads):
                writer.write_chunk(payload, start, len(items), raw_hash(items),
                                   extra={"header_items": _n_header(payload)})

        pool = executor or (resources.enter_context(process_pool(workers)) if workers > 1 else None)
        with ArchiveWriter(path, metadata) as writer:
            if pool is None:
                tick = (lambda k: progress(k, n)) if progress else None
                for group in groups():
                    write(group, encode_chunks(m, [(items, i, side) for i, _, items, side in group], progress=tick))
            else:
                jobs = ((group, None, (encode_job, m.id, [(items, i, side) for i, _, items, side in group]))
                        for group in groups())
                for group, _, payloads in in_order(pool, jobs, 2 * max(workers, 2)):
                    write(group, payloads)
                    if progress:
                        progress(sum(len(items) for _, _, items, _ in group), n)
            writer.close(final=dict(item_count=n, chunks=writer.chunk_count))
        raw_bytes = n * int(np.prod(src.item_shape, dtype=np.int64)) * np.dtype(src.dtype).itemsize
        return CompressResult(str(path), n, writer.chunk_count, tuple(src.item_shape), np.dtype(src.dtype).str,
                              raw_bytes, os.stat(path).st_size, time.perf_counter() - started)


LOCKSTEP_BYTES = 64 << 20


def auto_lockstep(chunk_size: int, item_bytes: int) -> int:
    """How many chunks to code in lockstep: more chains share each network call, but all their items sit in
    memory (per worker), so stay within ``LOCKSTEP_BYTES``."""
    return int(min(64, max(1, LOCKSTEP_BYTES // max(1, chunk_size * item_bytes))))


def encode_job(model_id: str, chunks: list) -> list[bytes]:
    """A group of chunks, in a worker process (the model is loaded once per process)."""
    return encode_chunks(get_model(model_id), chunks)


def process_pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: forking a process that holds BLAS/numba threads can deadlock.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def in_order(pool: Executor, jobs, max_in_flight: int):
    """Submit ``(key, value, (fn, *args))`` jobs, yield ``(key, value, result)`` in submission order, keeping
    at most ``max_in_flight`` jobs (and so their data) alive at once."""
    pending: deque = deque()
    try:
        for key, value, (fn, *args) in jobs:
            pending.append((key, value, pool.submit(fn, *args)))
            while len(pending) >= max_in_flight:
                key0, value0, future = pending.popleft()
                yield key0, value0, future.result()
        while pending:
            key0, value0, future = pending.popleft()
            yield key0, value0, future.result()
    finally:
        for *_, future in pending:
            future.cancel()


def _n_header(payload: bytes) -> int:
    return int.from_bytes(payload[:4], "little")
