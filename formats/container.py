"""Archive container: streaming ``ArchiveWriter`` (versions 1 and 2) and ``ArchiveReader`` (see SPEC.md)."""

from __future__ import annotations

import json
import operator
import os
from typing import Any

from bbarc.errors import UsageError

from . import index2, layout, layout2
from .atomic import output_error, publish, remove_quietly, temp_path_for
from .layout import AttachmentEntry, ChunkEntry, ShapeRun, SideSpec
from .reader import ArchiveReader

__all__ = ["ArchiveWriter", "ArchiveReader", "ChunkEntry", "AttachmentEntry", "ShapeRun", "SideSpec"]


def _as_count(value: Any, name: str) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise UsageError(f"{name} must be an integer, got {type(value).__name__}") from None
    if number < 0:
        raise UsageError(f"{name} must be >= 0, got {number}")
    return number


def _as_bytes(data: Any, what: str) -> memoryview:
    try:
        return memoryview(data).cast("B")
    except TypeError:
        raise UsageError(f"{what} must be bytes-like and contiguous, got {type(data).__name__}") from None


def _v1_record(number: int, offset: int, first_item: int, item_count: int, data: memoryview, raw_hash: str,
               extra: Any) -> tuple[ChunkEntry, tuple]:
    """Index entry and the byte strings of a v1 chunk record."""
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise UsageError(f"extra must be a dict or None, got {type(extra).__name__}")
    # Round-trip now so a bad value fails here, not at close(), and later caller edits don't leak in.
    extra = json.loads(layout.encode_json(extra, f"extra of chunk {number}"))
    entry = ChunkEntry(number, offset, data.nbytes, first_item, item_count, layout.payload_checksum(data), raw_hash,
                       extra)
    return entry, (layout.pack_record_header(number, first_item, item_count, data.nbytes, layout.crc32(data)), data)


def _v2_record(number: int, offset: int, first_item: int, item_count: int, data: memoryview, raw_hash: str,
               scheme: Any, item_shapes: Any, side: Any) -> tuple[ChunkEntry, tuple]:
    """Index entry and the byte strings of a v2 chunk record; UsageError for arguments a reader would refuse."""
    if scheme is None or item_shapes is None:
        raise UsageError("format version 2 needs scheme= and item_shapes= for every chunk")
    if first_item + item_count > layout2.MAX_ITEMS:
        raise UsageError(f"an archive holds at most {layout2.MAX_ITEMS} items")
    specs, raw_side = layout2.side_arrays(side)
    runs = layout2.shape_runs(item_shapes, item_count)
    scheme, runs, specs = layout2.chunk_fields(scheme, runs, specs, item_count, UsageError)
    runs = layout2.merge_runs(runs)
    desc = layout2.encode_chunk_desc(scheme, runs, specs)
    if len(desc) > layout2.DESC_MAX:
        raise UsageError(f"chunk {number} has too many shape runs ({len(runs)}); use smaller chunks")
    section = layout2.pack_side(raw_side, specs)
    header = layout2.pack_record_header(layout.RECORD_TAG, number, first_item, item_count, desc, section,
                                        data.nbytes, layout.crc32(data))
    entry = ChunkEntry(
        number, offset, data.nbytes, first_item, item_count, layout.payload_checksum(data), raw_hash, {},
        version=2, scheme=scheme, shapes=runs, side=specs, desc_length=len(desc), side_length=len(section),
        side_checksum=layout.payload_checksum(section) if section else None,
    )
    return entry, (header, desc, section, data)


class ArchiveWriter:
    """Streams records to a hidden temp file; ``close()`` publishes it atomically under ``path``.

    ``version=1`` (the default) writes format 1: ``write_chunk(..., extra=...)``. ``version=2`` writes format 2:
    every chunk states its coding ``scheme`` and ``item_shapes`` and may carry ``side`` arrays, and
    ``add_attachment`` stores named data. Nothing ever appears under ``path`` unless ``close()`` succeeds; an
    exception inside ``with`` or ``abort()`` removes the temp file and leaves any existing file at ``path`` untouched.
    """

    def __init__(self, path: str | os.PathLike, metadata: dict, version: int = layout.FORMAT_VERSION,
                 overwrite: bool = True):
        self.path = os.fspath(path)
        self._overwrite = overwrite  # False: a file that appears at ``path`` meanwhile is kept (``publish``)
        if version not in layout.SUPPORTED_VERSIONS or type(version) is not int:
            raise UsageError(f"archive format version must be one of {layout.SUPPORTED_VERSIONS}, got {version!r}")
        if not isinstance(metadata, dict):
            raise UsageError(f"archive metadata must be a dict, got {type(metadata).__name__}")
        self.version = version
        header = layout.pack_header(layout.encode_json(metadata, "archive metadata"), version)
        self._entries: list[ChunkEntry] = []
        self._attachments: list[AttachmentEntry] = []
        self._next_item = 0
        self._open = False
        temp = temp_path_for(self.path)
        try:
            self._file = open(temp, "xb")
        except OSError as exc:
            raise output_error(self.path, exc) from None
        self._temp: str | None = temp
        self._open = True
        self._guarded(self._file.write, header)
        self._offset = len(header)

    @property
    def chunk_count(self) -> int:
        return len(self._entries)

    @property
    def item_count(self) -> int:
        return self._next_item

    def write_chunk(self, payload: bytes, first_item: int, item_count: int, raw_hash: str, extra: dict | None = None,
                    *, scheme: str | None = None, item_shapes: Any = None, side: dict | None = None) -> None:
        """Append one chunk; chunks must come in order, ``first_item`` = sum of earlier ``item_count``s.

        Version 2 only: ``scheme`` names the codec of the payload (e.g. ``"bits-back"``, ``"stored"``);
        ``item_shapes`` is one shape for all items or a list of ``(shape, count)`` runs; ``side`` maps names to
        arrays whose first axis counts the items. Version 1 only: ``extra``, a small JSON object.
        """
        self._check_open()
        first_item = _as_count(first_item, "first_item")
        item_count = _as_count(item_count, "item_count")
        if first_item != self._next_item:
            raise UsageError(
                f"chunk {len(self._entries)} must start at item {self._next_item} (the items already written), "
                f"got first_item={first_item}; write chunks in order without gaps"
            )
        if item_count < 1:
            raise UsageError(f"chunk {len(self._entries)} has item_count=0; every chunk must hold at least one item")
        if not isinstance(raw_hash, str):
            raise UsageError(f"raw_hash must be a str, got {type(raw_hash).__name__}")
        data = _as_bytes(payload, "payload")
        if self.version == 1:
            if scheme is not None or item_shapes is not None or side is not None:
                raise UsageError("scheme, item_shapes and side need an archive of format version 2 (version=2)")
            entry, parts = _v1_record(len(self._entries), self._offset, first_item, item_count, data, raw_hash, extra)
        else:
            if extra is not None:
                raise UsageError("extra is format version 1 only; version 2 records scheme, item_shapes and side")
            entry, parts = _v2_record(len(self._entries), self._offset, first_item, item_count, data, raw_hash,
                                      scheme, item_shapes, side)
        self._append(*parts)
        self._entries.append(entry)
        self._next_item += item_count

    def add_attachment(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` (a printable string of 1 to 128 characters, unique in the archive)."""
        self._check_open()
        if self.version < 2:
            raise UsageError("attachments need an archive of format version 2 (version=2)")
        name = layout2.check_attachment_name(name, UsageError)
        if any(a.name == name for a in self._attachments):
            raise UsageError(f"the archive already has an attachment named {name!r}")
        if len(self._attachments) >= layout2.MAX_ATTACHMENTS:
            raise UsageError(f"an archive holds at most {layout2.MAX_ATTACHMENTS} attachments")
        data = _as_bytes(data, "attachment data")
        desc = layout2.encode_attachment_desc(name)
        number = len(self._attachments)
        header = layout2.pack_record_header(layout.ATTACHMENT_TAG, number, 0, 0, desc, b"", data.nbytes,
                                            layout.crc32(data))
        entry = AttachmentEntry(number, name, self._offset, data.nbytes, layout.payload_checksum(data), len(desc))
        self._append(header, desc, data)
        self._attachments.append(entry)

    def close(self, final: dict | None = None) -> None:
        """Write index and trailer, fsync and rename onto ``path``. ``final`` is stored in the footer."""
        self._check_open()
        final = {} if final is None else final
        if not isinstance(final, dict):
            raise UsageError(f"final metadata must be a dict or None, got {type(final).__name__}")
        if self.version == 1:
            index = {"chunks": [layout.entry_to_json(e) for e in self._entries], "final": final}
        else:
            index = index2.index_to_json(self._entries, self._attachments, final)
        frame, raw_length = layout.pack_index(index)
        size = self._offset + len(frame) + layout.TRAILER.size
        if raw_length > layout.index_raw_limit(size):
            raise UsageError(f"the index would hold {raw_length} bytes of JSON, more than readers accept for "
                             f"a {size}-byte archive; keep final metadata small")
        self._guarded(self._finish, frame)

    def abort(self) -> None:
        """Discard everything written; safe to call more than once."""
        self._open = False
        if self._temp is not None:
            try:
                self._file.close()
            finally:
                remove_quietly(self._temp)
                self._temp = None

    def _append(self, *parts) -> None:
        for part in parts:
            self._guarded(self._file.write, part)
            self._offset += len(part) if not isinstance(part, memoryview) else part.nbytes

    def _finish(self, index_frame: bytes) -> None:
        self._file.write(index_frame)
        self._file.write(layout.pack_trailer(self._offset, index_frame, self.version))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        publish(self._temp, self.path, self._overwrite)
        self._temp = None
        self._open = False

    def _guarded(self, func, *args) -> None:
        # After a failed write the temp file's contents are unknown, so give it up at once.
        try:
            func(*args)
        except BaseException:
            self.abort()
            raise

    def _check_open(self) -> None:
        if not self._open:
            raise UsageError(f"archive writer for {self.path!r} is already closed or aborted")

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._open:
            self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_open", False):
                self.abort()
        except Exception:
            pass
