"""Archive container v1: streaming ``ArchiveWriter`` and random-access ``ArchiveReader`` (see SPEC.md)."""

from __future__ import annotations

import bisect
import hmac
import json
import operator
import os
import stat
from typing import Any

from . import layout
from .atomic import publish, remove_quietly, temp_path_for
from bbarc.errors import CorruptArchiveError, UsageError
from .layout import ChunkEntry

__all__ = ["ArchiveWriter", "ArchiveReader", "ChunkEntry"]

_RECOVER_HINT = "; open it with recover=True to salvage the intact chunks"


def _as_count(value: Any, name: str) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise UsageError(f"{name} must be an integer, got {type(value).__name__}") from None
    if number < 0:
        raise UsageError(f"{name} must be >= 0, got {number}")
    return number


class ArchiveWriter:
    """Streams chunks to a hidden temp file; ``close()`` publishes it atomically under ``path``.

    Nothing ever appears under ``path`` unless ``close()`` succeeds; an exception inside ``with`` or
    ``abort()`` removes the temp file and leaves any existing file at ``path`` untouched.
    """

    def __init__(self, path: str | os.PathLike, metadata: dict):
        self.path = os.fspath(path)
        if not isinstance(metadata, dict):
            raise UsageError(f"archive metadata must be a dict, got {type(metadata).__name__}")
        header = layout.pack_header(layout.encode_json(metadata, "archive metadata"))
        self._entries: list[ChunkEntry] = []
        self._next_item = 0
        self._open = False
        temp = temp_path_for(self.path)
        try:
            self._file = open(temp, "xb")
        except OSError as exc:
            raise UsageError(f"cannot create a temp file next to {self.path!r}: {exc.strerror}") from None
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

    def write_chunk(
        self, payload: bytes, first_item: int, item_count: int, raw_hash: str, extra: dict | None = None
    ) -> None:
        """Append one chunk; chunks must come in order, ``first_item`` = sum of earlier ``item_count``s."""
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
        if extra is None:
            extra = {}
        if not isinstance(extra, dict):
            raise UsageError(f"extra must be a dict or None, got {type(extra).__name__}")
        # Round-trip now so a bad value fails here, not at close(), and later caller edits don't leak in.
        extra = json.loads(layout.encode_json(extra, f"extra of chunk {len(self._entries)}"))
        try:
            data = memoryview(payload).cast("B")
        except TypeError:
            raise UsageError(f"payload must be bytes-like and contiguous, got {type(payload).__name__}") from None
        entry = ChunkEntry(
            index=len(self._entries),
            offset=self._offset,
            length=data.nbytes,
            first_item=first_item,
            item_count=item_count,
            checksum=layout.payload_checksum(data),
            raw_hash=raw_hash,
            extra=extra,
        )
        record = layout.pack_record_header(entry.index, first_item, item_count, entry.length, layout.crc32(data))
        self._guarded(self._file.write, record)
        self._guarded(self._file.write, data)
        self._entries.append(entry)
        self._offset += len(record) + entry.length
        self._next_item += item_count

    def close(self, final: dict | None = None) -> None:
        """Write index and trailer, fsync and rename onto ``path``. ``final`` is stored in the footer."""
        self._check_open()
        final = {} if final is None else final
        if not isinstance(final, dict):
            raise UsageError(f"final metadata must be a dict or None, got {type(final).__name__}")
        index = {"chunks": [layout.entry_to_json(e) for e in self._entries], "final": final}
        index_json = layout.pack_index(index)
        self._guarded(self._finish, index_json)

    def abort(self) -> None:
        """Discard everything written; safe to call more than once."""
        self._open = False
        if self._temp is not None:
            try:
                self._file.close()
            finally:
                remove_quietly(self._temp)
                self._temp = None

    def _finish(self, index_json: bytes) -> None:
        self._file.write(index_json)
        self._file.write(layout.pack_trailer(self._offset, index_json))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        publish(self._temp, self.path)
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


def _checked_index(value, count: int, what: str, holds: str) -> int:
    """``value`` as an int in [0, count), or a UsageError naming ``what`` and what the archive ``holds``."""
    try:
        value = operator.index(value)
    except TypeError:
        raise UsageError(f"{what} number must be an integer, got {type(value).__name__}") from None
    if not 0 <= value < count:
        raise UsageError(f"{what} {value} is out of range: {holds}")
    return value


def _open_readonly(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise UsageError(f"archive {path!r} does not exist; check the path") from None
    except OSError as exc:
        raise UsageError(f"cannot open archive {path!r}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"archive {path!r} is not a regular file")
    return fd


class ArchiveReader:
    """Random access to a finished archive. Thread-safe: reads use ``os.pread`` on one shared fd.

    Pickling stores only ``(path, recover)`` and reopens, so a reader can go to DataLoader workers.
    With ``recover=True`` an unusable footer is replaced by a forward scan of the chunk records;
    ``recovered`` then says so and ``metadata`` holds only the header metadata.
    """

    def __init__(self, path: str | os.PathLike, recover: bool = False):
        self.path = os.fspath(path)
        self._recover = bool(recover)
        self.recovered = False
        self.recovery_reason: str | None = None
        self._fd: int | None = None
        self._fd = _open_readonly(self.path)
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- public API ---------------------------------------------------------------------------

    @property
    def metadata(self) -> dict:
        """Header metadata merged with the ``final`` dict from close() (final keys win)."""
        return self._metadata

    @property
    def chunks(self) -> list[ChunkEntry]:
        return self._chunks

    @property
    def item_count(self) -> int:
        return self._firsts[-1] + self._chunks[-1].item_count if self._chunks else 0

    def read_chunk(self, i: int) -> bytes:
        """Payload of chunk ``i``, verified; CorruptArchiveError(chunk=i) if it is damaged."""
        entry = self._entry(i)
        i = entry.index
        header_buf = self._pread(layout.RECORD_HEADER_SIZE, entry.offset)
        try:
            header = layout.parse_record_header(header_buf)
        except CorruptArchiveError as exc:
            raise self._corrupt(f"chunk {i} at byte {entry.offset} is damaged: {exc}", chunk=i) from None
        expected = (i, entry.first_item, entry.item_count, entry.length)
        if header[:4] != expected:
            raise self._corrupt(
                f"chunk {i} record header (chunk, first_item, item_count, length) = {tuple(header[:4])} "
                f"disagrees with the index {expected}",
                chunk=i,
            )
        payload = self._pread(entry.length, entry.offset + layout.RECORD_HEADER_SIZE)
        if len(payload) != entry.length:
            raise self._corrupt(f"chunk {i} is cut short: the file ends inside its payload", chunk=i)
        if layout.crc32(payload) != header.payload_crc:
            raise self._corrupt(f"chunk {i} payload is damaged (crc32 mismatch)", chunk=i)
        if entry.checksum is not None and not hmac.compare_digest(layout.payload_checksum(payload), entry.checksum):
            raise self._corrupt(f"chunk {i} payload is damaged (checksum mismatch)", chunk=i)
        return payload

    def chunk_for_item(self, item: int) -> int:
        """Index of the chunk holding item number ``item``."""
        item = _checked_index(item, self.item_count, "item", f"{self.path!r} holds items 0..{self.item_count - 1}")
        return bisect.bisect_right(self._firsts, item) - 1

    def verify(self) -> list[tuple[int, str | None]]:
        """Check every chunk; one ``(chunk, error message or None)`` per chunk. Never raises for bad chunks."""
        report: list[tuple[int, str | None]] = []
        for entry in self._chunks:
            try:
                self.read_chunk(entry.index)
            except CorruptArchiveError as exc:
                report.append((entry.index, str(exc)))
            else:
                report.append((entry.index, None))
        return report

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self) -> dict:
        return {"path": self.path, "recover": self._recover}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], recover=state["recover"])

    def __repr__(self) -> str:
        return f"ArchiveReader({self.path!r}, chunks={len(self._chunks)}, items={self.item_count})"

    # -- loading ------------------------------------------------------------------------------

    def _load(self) -> None:
        size = os.fstat(self._fd).st_size
        header_end, metadata = self._read_header(size)
        try:
            self._chunks, final = self._read_footer(size, header_end)
        except CorruptArchiveError as exc:
            if not self._recover:
                raise self._corrupt(f"{exc}{_RECOVER_HINT}") from None
            self._chunks, final = self._scan_records(size, header_end), {}
            self.recovered = True
            self.recovery_reason = str(exc)
        self._metadata = {**metadata, **final}
        self._firsts = [e.first_item for e in self._chunks]

    def _read_header(self, size: int) -> tuple[int, dict]:
        fixed = self._pread(layout.HEADER_FIXED.size, 0)
        if fixed[:8] != layout.MAGIC:
            raise self._corrupt(self._bad_magic_reason(fixed, size))
        if len(fixed) < layout.HEADER_FIXED.size:
            raise self._corrupt("file is truncated inside the header")
        _, version, meta_len = layout.HEADER_FIXED.unpack(fixed)
        if version not in layout.SUPPORTED_VERSIONS:
            newer = version > layout.FORMAT_VERSION
            hint = "a newer bbarc may be needed to read it" if newer else "the file is damaged"
            raise self._corrupt(
                f"archive format version {version} is not supported (this bbarc reads version "
                f"{', '.join(map(str, layout.SUPPORTED_VERSIONS))}); {hint}"
            )
        self.version = version
        header_end = layout.HEADER_FIXED.size + meta_len + layout.CRC.size
        if header_end > size:
            raise self._corrupt(f"file is truncated: header needs {header_end} bytes but the file has {size}")
        meta_json = self._pread(meta_len, layout.HEADER_FIXED.size)
        (meta_crc,) = layout.CRC.unpack(self._pread(layout.CRC.size, layout.HEADER_FIXED.size + meta_len))
        if layout.crc32(meta_json) != meta_crc:
            raise self._corrupt("header metadata is damaged (crc32 mismatch)")
        try:
            return header_end, layout.decode_json_object(meta_json, "header metadata")
        except CorruptArchiveError as exc:
            raise self._corrupt(str(exc)) from None

    @staticmethod
    def _bad_magic_reason(head: bytes, size: int) -> str:
        if size == 0:
            return "file is empty, not a bbarc archive"
        if head.startswith(layout.MAGIC[:6]):
            return "file starts like a bbarc archive but its line-ending bytes changed: it was copied in text mode"
        return f"not a bbarc archive (starts with {head[:8]!r}, expected {layout.MAGIC!r})"

    def _read_footer(self, size: int, header_end: int) -> tuple[list[ChunkEntry], dict]:
        if size < header_end + layout.TRAILER.size:
            raise CorruptArchiveError("file is truncated: it ends before the trailer")
        trailer = self._pread(layout.TRAILER.size, size - layout.TRAILER.size)
        index_offset, index_len, index_crc, version, end_magic = layout.TRAILER.unpack(trailer)
        if end_magic != layout.END_MAGIC:
            raise CorruptArchiveError("trailer is missing or damaged (no end marker): the file is truncated")
        if version != self.version:
            raise CorruptArchiveError(f"trailer says format version {version} but the header says {self.version}")
        if index_offset < header_end or index_offset + index_len + layout.TRAILER.size != size:
            raise CorruptArchiveError(f"trailer is damaged: index at {index_offset}+{index_len} does not fit the file")
        index_json = self._pread(index_len, index_offset)
        if layout.crc32(index_json) != index_crc:
            raise CorruptArchiveError("chunk index is damaged (crc32 mismatch)")
        index = layout.unpack_index(index_json)
        return layout.parse_index(index, header_end, index_offset)

    def _scan_records(self, size: int, header_end: int) -> list[ChunkEntry]:
        # Walks record headers only (payloads are checked lazily by read_chunk); stops at the first
        # record that is not intact, so the result is always a gap-free prefix of the item range.
        entries: list[ChunkEntry] = []
        offset, next_item = header_end, 0
        while offset + layout.RECORD_HEADER_SIZE <= size:
            try:
                header = layout.parse_record_header(self._pread(layout.RECORD_HEADER_SIZE, offset))
            except CorruptArchiveError:
                break
            end = offset + layout.RECORD_HEADER_SIZE + header.length
            if header.chunk != len(entries) or header.first_item != next_item or header.item_count < 1 or end > size:
                break
            entries.append(
                ChunkEntry(len(entries), offset, header.length, next_item, header.item_count, None, None, {})
            )
            offset, next_item = end, next_item + header.item_count
        return entries

    # -- helpers ------------------------------------------------------------------------------

    def _entry(self, i: int) -> ChunkEntry:
        n = len(self._chunks)
        return self._chunks[_checked_index(i, n, "chunk", f"{self.path!r} has {n} chunks")]

    def _pread(self, n: int, offset: int) -> bytes:
        fd = self._fd
        if fd is None:
            raise UsageError(f"archive reader for {self.path!r} is closed")
        parts = []
        while n > 0:
            # pread may return less than asked (Linux caps one call near 2 GiB); b"" means end of file.
            part = os.pread(fd, n, offset)
            if not part:
                break
            parts.append(part)
            n -= len(part)
            offset += len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)  # join copies, so skip it for one part

    def _corrupt(self, message: str, chunk: int | None = None) -> CorruptArchiveError:
        return CorruptArchiveError(f"{self.path}: {message}", chunk=chunk)
