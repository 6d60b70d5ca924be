"""``ArchiveReader``: random access to a finished archive of format version 1 or 2 (see SPEC.md)."""

from __future__ import annotations

import bisect
import operator
import os
import stat

import numpy as np

from bbarc.errors import CorruptArchiveError, UsageError

from . import layout, layout2, loading
from .layout import AttachmentEntry, ChunkEntry

_RECOVER_HINT = "; `bbarc recover` writes its intact chunks to a new archive (API: open it with recover=True)"


def checked_index(value, count: int, what: str, holds: str) -> int:
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


def pread_all(fd: int, n: int, offset: int) -> bytes:
    """``n`` bytes at ``offset``, fewer only at the end of the file."""
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


def _report(keys: list, read) -> list[tuple]:
    report = []
    for key in keys:
        try:
            read(key)
        except CorruptArchiveError as exc:
            report.append((key, str(exc)))
        else:
            report.append((key, None))
    return report


class ArchiveReader:
    """Random access to a finished archive. Thread-safe: reads use ``os.pread`` on one shared fd.

    Pickling stores only ``(path, recover)`` and reopens, so a reader can go to DataLoader workers.
    With ``recover=True`` an unusable footer is replaced by a forward scan of the records;
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

    @property
    def metadata(self) -> dict:
        """Header metadata merged with the ``final`` dict from close() (final keys win)."""
        return self._metadata

    @property
    def chunks(self) -> list[ChunkEntry]:
        return self._chunks

    @property
    def attachments(self) -> list[AttachmentEntry]:
        """Named attachments in file order (always empty for version 1)."""
        return self._attachments

    @property
    def item_count(self) -> int:
        return self._chunks[-1].stop_item if self._chunks else 0

    def read_chunk(self, i: int) -> bytes:
        """Payload of chunk ``i``, verified; CorruptArchiveError(chunk=i) if it is damaged."""
        entry = self._entry(i)
        i = entry.index
        try:
            header = loading.check_chunk_record(self._pread, entry, more=0)[0]
            payload = self._pread(entry.length, entry.payload_offset)
            if len(payload) != entry.length:
                raise CorruptArchiveError("the file ends inside its payload")
            loading.check_bytes(payload, header.payload_crc, entry.checksum, "payload")
        except CorruptArchiveError as exc:
            raise self._corrupt(f"chunk {i} at byte {entry.offset} is damaged: {exc}", chunk=i) from None
        return payload

    def read_side(self, i: int) -> dict[str, np.ndarray]:
        """Side arrays of chunk ``i`` (name -> array, first axis the chunk's items), without its payload.

        Version 1 keeps side data inside the payload, so this is empty for v1 archives.
        """
        entry = self._entry(i)
        if not entry.side:
            return {}
        try:
            header, section = loading.check_chunk_record(self._pread, entry, more=entry.side_length)
            loading.check_bytes(section, header.side_crc, entry.side_checksum, "side section")
            return layout2.unpack_side(section, entry.side)
        except CorruptArchiveError as exc:
            raise self._corrupt(f"side data of chunk {entry.index} is damaged: {exc}", chunk=entry.index) from None

    def item_shape(self, item: int) -> tuple[int, ...] | None:
        """Shape of item number ``item`` from the index alone; None for version 1 (the shape is in the metadata)."""
        entry = self._chunks[self.chunk_for_item(item)]
        return entry.item_shape(operator.index(item) - entry.first_item)

    def chunk_for_item(self, item: int) -> int:
        """Index of the chunk holding item number ``item``."""
        item = checked_index(item, self.item_count, "item", f"{self.path!r} holds items 0..{self.item_count - 1}")
        c = bisect.bisect_right(self._firsts, item) - 1
        if c < 0 or item >= self._chunks[c].stop_item:  # only after a recovery scan skipped a damaged record
            raise self._corrupt(f"item {item} was in a damaged record that the recovery scan skipped{_RECOVER_HINT}")
        return c

    def attachment_names(self) -> list[str]:
        return [a.name for a in self._attachments]

    def read_attachment(self, name: str) -> bytes:
        """The bytes stored under ``name``, verified; UsageError if there is no such attachment."""
        entry = self._by_name.get(name) if isinstance(name, str) else None
        if entry is None:
            have = ", ".join(map(ascii, self.attachment_names())) or "none"
            raise UsageError(f"{self.path!r} has no attachment named {name!r} (it has: {have})")
        desc = layout2.encode_attachment_desc(entry.name)
        try:
            header = loading.check_record(self._pread, entry, layout.ATTACHMENT_TAG, desc, 0, 0, 0, 0)[0]
            data = self._pread(entry.length, entry.payload_offset)
            if len(data) != entry.length:
                raise CorruptArchiveError("the file ends inside it")
            loading.check_bytes(data, header.payload_crc, entry.checksum, "data")
        except CorruptArchiveError as exc:
            raise self._corrupt(f"attachment {name!r} is damaged: {exc}") from None
        return data

    def verify(self) -> list[tuple[int, str | None]]:
        """Check every chunk (payload and side data); ``(chunk, error or None)`` each. Never raises for bad chunks."""
        return _report([e.index for e in self._chunks], lambda i: (self.read_chunk(i), self.read_side(i)))

    def verify_attachments(self) -> list[tuple[str, str | None]]:
        """Check every attachment; ``(name, error or None)`` each."""
        return _report(self.attachment_names(), self.read_attachment)

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

    def _load(self) -> None:
        size = os.fstat(self._fd).st_size
        try:
            self.version, header_end, metadata = loading.read_header(self._pread, size)
        except CorruptArchiveError as exc:
            raise self._corrupt(str(exc)) from None
        try:
            self._chunks, self._attachments, final = loading.read_footer(self._pread, size, self.version, header_end)
        except CorruptArchiveError as exc:
            if not self._recover:
                raise self._corrupt(f"{exc}{_RECOVER_HINT}") from None
            self._chunks, self._attachments = loading.scan_records(self._pread, size, self.version, header_end)
            final, self.recovered, self.recovery_reason = {}, True, str(exc)
        self._metadata = {**metadata, **final}
        self._firsts = [e.first_item for e in self._chunks]
        self._by_name = {a.name: a for a in self._attachments}

    def _entry(self, i: int) -> ChunkEntry:
        n = len(self._chunks)
        return self._chunks[checked_index(i, n, "chunk", f"{self.path!r} has {n} chunks")]

    def _pread(self, n: int, offset: int) -> bytes:
        if self._fd is None:
            raise UsageError(f"archive reader for {self.path!r} is closed")
        return pread_all(self._fd, n, offset)

    def _corrupt(self, message: str, chunk: int | None = None) -> CorruptArchiveError:
        return CorruptArchiveError(f"{self.path}: {message}", chunk=chunk)
