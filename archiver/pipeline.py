"""Streaming compression and decompression: source -> chunks -> chains -> archive, and back.

Memory stays bounded by one chunk (plus the model): items are read from the source chunk by chunk, and the
archive is written as it goes (``bbarc.formats.container`` finalises it atomically, so a failure leaves nothing).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import Executor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from bbarc.formats.container import ArchiveWriter
from bbarc.formats.layout2 import SCHEME_BITS_BACK, SCHEME_STORED
from bbarc.errors import ModelError, UsageError
from bbarc.formats.atomic import check_target, output_errors
from bbarc.formats.inputs import open_source
from bbarc.formats.locations import parse_location

from .chain import codec_parameters, encode_chunks
from .execution import auto_lockstep, lockstep_groups, run_ordered
from .metadata import DEFAULT_CHUNK, MAX_CHUNK_BYTES, ArchiveMetadata, CodingScheme, ModelRecord, chunk_fits
from .model import ItemSpec, Model
from .payload import raw_hash
from .registry import default_registry, resolve

ARCHIVE_VERSION = 2  # the container version new archives are written in (formats/SPEC.md)


def bbarc_version() -> str:
    try:
        return version("bbarc")
    except PackageNotFoundError:
        return "unknown"


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


def compress(source, path, model: "str | Model", chunk_size: int = DEFAULT_CHUNK, dataset: str | None = None,
             labels=None, progress=None, workers: int = 1, executor: Executor | None = None,
             lockstep: int | None = None, overwrite: bool = False) -> CompressResult:
    """Compress ``source`` (path, ``file.h5:/key``, or array) into the archive ``path``.

    ``labels``: optional per-item side data (array or source spec) stored in each chunk's header.
    ``progress(advance_items, total_items)``: optional callback.
    ``workers``: encode chunks in this many processes; or pass any ``concurrent.futures.Executor`` (a Dask
    ``client.get_executor()`` works). Chunks are read, and written in order, by this process alone; at most
    ``2 * workers`` lockstep groups are in flight, so memory stays bounded (``bbarc.execution.run_ordered``).
    ``lockstep``: chunks coded together, sharing network calls (see ``chain.encode_chunks``); the bytes do not
    depend on it. By default as many as fit in ``execution.LOCKSTEP_BYTES`` of items.
    ``overwrite``: replace an existing archive at ``path``; ``source`` and ``labels`` are never written over.
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise UsageError(f"chunk size must be a positive integer, got {chunk_size!r}")
    check_target(path, [input_path(source, dataset), input_path(labels, None)], overwrite)
    started = time.perf_counter()
    with ExitStack() as resources:
        src = resources.enter_context(open_source(source, dataset))
        n = len(src)
        if n == 0:
            raise UsageError(f"{src.description} holds no items: nothing to compress")
        side_src = resources.enter_context(open_source(labels)) if labels is not None else None
        if side_src is not None and len(side_src) != n:
            raise UsageError(f"labels hold {len(side_src)} entries but {src.description} holds {n} items")
        spec = ItemSpec(src.item_shape, src.dtype)
        m = resolve(model, spec)
        m.check_items(src.read(0, 1))
        metadata = archive_metadata(src, m, chunk_size, side=["labels"] if side_src is not None else [])
        item_bytes = spec.item_bytes
        if not chunk_fits(spec, chunk_size):
            raise UsageError(f"a chunk of {chunk_size} items of {item_bytes} bytes is empty or over the "
                             f"{MAX_CHUNK_BYTES}-byte bound; use a smaller chunk size")

        def chunks():
            """(items, chunk index, side data) of each chunk in turn, read and checked as the coder needs them."""
            for index, start in enumerate(range(0, n, chunk_size)):
                stop = min(start + chunk_size, n)
                items = src.read(start, stop)
                m.check_items(items)
                yield items, index, {}  # side data goes into the record, readable without decoding (v2)

        coded = resources.enter_context(closing(run_ordered(
            lockstep_groups(chunks(), lockstep if lockstep is not None else auto_lockstep(
                chunk_size, item_bytes, -(-n // chunk_size), workers if executor is None else max(workers, 2))),
            local=lambda group, tick: encode_chunks(m, group, progress=tick),
            remote=lambda group: (encode_job, m, group),
            size=lambda group: sum(len(items) for items, _, _ in group),
            workers=workers, executor=executor, progress=(lambda k: progress(k, n)) if progress else None,
        )))
        scheme = SCHEME_BITS_BACK if m.item_codec() is not None else SCHEME_STORED
        with output_errors(path):
            writer = resources.enter_context(ArchiveWriter(path, metadata.to_json(ARCHIVE_VERSION),
                                                           version=ARCHIVE_VERSION, overwrite=overwrite))
        for group, payloads in coded:
            for (items, index, _), payload in zip(group, payloads):
                start = index * chunk_size
                side = {"labels": side_src.read(start, start + len(items))} if side_src else None
                with output_errors(path):  # only the writing: a failed read of the input is no output error
                    writer.write_chunk(payload, start, len(items), raw_hash(items), scheme=scheme,
                                       item_shapes=items.shape[1:], side=side)
        with output_errors(path):
            writer.close(final=dict(item_count=n, chunks=writer.chunk_count))
        raw_bytes = n * item_bytes
        return CompressResult(str(path), n, writer.chunk_count, tuple(src.item_shape), np.dtype(src.dtype).str,
                              raw_bytes, os.stat(path).st_size, time.perf_counter() - started)


def input_path(source, dataset: str | None) -> str | None:
    """The file a source spec reads (``file.h5:/key`` -> ``file.h5``), or None for arrays and bad specs (which
    ``open_source`` reports)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        return parse_location(source, dataset, must_exist=False).path
    except UsageError:
        return os.fspath(source)


def archive_metadata(src, m: Model, chunk_size: int, side: list[str]) -> ArchiveMetadata:
    """The archive-level metadata recorded for ``src`` coded by model ``m``."""
    return ArchiveMetadata(
        writer=f"bbarc {bbarc_version()}", source=src.description, item_spec=ItemSpec(src.item_shape, src.dtype),
        source_dtype=np.dtype(src.stored_dtype),  # byte order of the input, reproduced on decompression
        item_count=len(src), chunk_size=chunk_size, model=ModelRecord(m.get_config(), *provenance(m)),
        coding=CodingScheme(codec_parameters()), side=tuple(side),
    )


def provenance(m: Model) -> tuple[str, str, str]:
    """(plugin, distribution, version) of the family that built ``m``, recorded so that a reader missing the
    model can say what to install; a model value of an unregistered family records its module."""
    try:
        entry = default_registry().entry(m.family)
    except ModelError:
        return type(m).__module__, "(unregistered)", ""
    return entry.plugin, entry.distribution, entry.version


def encode_job(model: Model, chunks: list) -> list[bytes]:
    """A group of chunks, in a worker process. The model arrives by value (config and weights); the first copy a
    worker sees is kept, so its networks are built once per process, not once per job."""
    key = (type(model), model.family, model.weights_sha256(), model.item_shape, str(model.item_dtype))
    model = _worker_models.setdefault(key, model)
    return encode_chunks(model, chunks)


_worker_models: dict[tuple, Model] = {}


