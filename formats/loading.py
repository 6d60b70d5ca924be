"""Opening an archive: header, footer (trailer and index) and the forward recovery scan, for both versions.

Functions take ``pread(n, offset) -> bytes`` (short at end of file) and the file's size, and raise
CorruptArchiveError without the path; the reader adds it.
"""

from __future__ import annotations

import hmac
from typing import Callable

from bbarc.errors import CorruptArchiveError

from . import index2, layout, layout2
from .layout import RECORD2_HEADER_SIZE, AttachmentEntry, ChunkEntry

Pread = Callable[[int, int], bytes]


def read_header(pread: Pread, size: int) -> tuple[int, int, dict]:
    """(version, header_end, metadata) of the file, or CorruptArchiveError."""
    fixed = pread(layout.HEADER_FIXED.size, 0)
    if fixed[:8] != layout.MAGIC:
        raise CorruptArchiveError(_bad_magic_reason(fixed, size))
    if len(fixed) < layout.HEADER_FIXED.size:
        raise CorruptArchiveError("file is truncated inside the header")
    _, version, meta_len = layout.HEADER_FIXED.unpack(fixed)
    if version not in layout.SUPPORTED_VERSIONS:
        newer = version > layout.LATEST_VERSION
        hint = "a newer bbarc may be needed to read it" if newer else "the file is damaged"
        raise CorruptArchiveError(
            f"archive format version {version} is not supported (this bbarc reads version "
            f"{', '.join(map(str, layout.SUPPORTED_VERSIONS))}); {hint}"
        )
    header_end = layout.HEADER_FIXED.size + meta_len + layout.CRC.size
    if header_end > size:  # also bounds the metadata read below by the file size
        raise CorruptArchiveError(f"file is truncated: header needs {header_end} bytes but the file has {size}")
    meta_json = pread(meta_len, layout.HEADER_FIXED.size)
    (meta_crc,) = layout.CRC.unpack(pread(layout.CRC.size, layout.HEADER_FIXED.size + meta_len))
    if layout.crc32(meta_json) != meta_crc:
        raise CorruptArchiveError("header metadata is damaged (crc32 mismatch)")
    return version, header_end, layout.decode_json_object(meta_json, "header metadata")


def _bad_magic_reason(head: bytes, size: int) -> str:
    if size == 0:
        return "file is empty, not a bbarc archive"
    if head.startswith(layout.MAGIC[:6]):
        return "file starts like a bbarc archive but its line-ending bytes changed: it was copied in text mode"
    return f"not a bbarc archive (starts with {head[:8]!r}, expected {layout.MAGIC!r})"


def read_footer(pread: Pread, size: int, version: int, header_end: int):
    """(chunks, attachments, final) from the trailer and index, or CorruptArchiveError."""
    if size < header_end + layout.TRAILER.size:
        raise CorruptArchiveError("file is truncated: it ends before the trailer")
    trailer = pread(layout.TRAILER.size, size - layout.TRAILER.size)
    index_offset, index_len, index_crc, trailer_version, end_magic = layout.TRAILER.unpack(trailer)
    if end_magic != layout.END_MAGIC:
        raise CorruptArchiveError("trailer is missing or damaged (no end marker): the file is truncated")
    if trailer_version != version:
        raise CorruptArchiveError(f"trailer says format version {trailer_version} but the header says {version}")
    if index_offset < header_end or index_offset + index_len + layout.TRAILER.size != size:
        raise CorruptArchiveError(f"trailer is damaged: index at {index_offset}+{index_len} does not fit the file")
    index_frame = pread(index_len, index_offset)
    if layout.crc32(index_frame) != index_crc:
        raise CorruptArchiveError("chunk index is damaged (crc32 mismatch)")
    index = layout.unpack_index(index_frame, size)
    if version == 1:
        chunks, final = layout.parse_index(index, header_end, index_offset)
        return chunks, [], final
    return index2.parse_index(index, header_end, index_offset)


def scan_records(pread: Pread, size: int, version: int, header_end: int):
    """(chunks, attachments) found by walking record headers from ``header_end``. Past a record that fails, the
    scan resynchronises on the next valid record header (its tag and own crc32), so one damaged record loses its
    own items only; chunks found after such a gap keep their record's number in ``ChunkEntry.number``."""
    if version == 1:
        return _scan_v1(pread, size, header_end), []
    chunks: list[ChunkEntry] = []
    attachments: list[AttachmentEntry] = []
    offset: int | None = header_end
    while offset is not None and offset + RECORD2_HEADER_SIZE <= size:
        try:
            record, end = _scanned_record(pread, size, offset, chunks, attachments)
        except CorruptArchiveError:
            offset = next_record_header(pread, size, offset + 1, layout2.TAGS, RECORD2_HEADER_SIZE)
            continue
        (chunks if isinstance(record, ChunkEntry) else attachments).append(record)
        offset = end
    return chunks, attachments


SCAN_BLOCK = 1 << 20  # bytes read at a time while looking for the next record header: bounded memory


def next_record_header(pread: Pread, size: int, start: int, tags: tuple[bytes, ...], header_size: int) -> int | None:
    """Offset of the first record header at or after ``start`` whose tag and own crc32 are valid, or None.
    A payload that happens to hold a tag is skipped by the header's crc32 (a false match has odds 2**-32, and
    the sequence and descriptor checks come after it)."""
    parse = layout2.parse_record_header if header_size == RECORD2_HEADER_SIZE else layout.parse_record_header
    while start + header_size <= size:
        block = pread(min(SCAN_BLOCK + header_size, size - start), start)
        hits = sorted(i for tag in tags for i in _find_all(block, tag))
        for i in hits:
            try:
                parse(block[i : i + header_size])  # cut short (and refused) only where the file ends
            except CorruptArchiveError:
                continue
            return start + i
        start += SCAN_BLOCK
    return None


def _find_all(block: bytes, tag: bytes):
    """Positions of ``tag`` in the first SCAN_BLOCK bytes of ``block`` (the rest is overlap for the header)."""
    i = block.find(tag)
    while 0 <= i < SCAN_BLOCK:
        yield i
        i = block.find(tag, i + 1)


def _continues(number: int, expected: int, first_item: int, next_item: int) -> bool:
    """A record continues the sequence: the next one, or one past a gap that skipped both chunks and items."""
    return (number, first_item) == (expected, next_item) or (number > expected and first_item > next_item)


def _scanned_record(pread: Pread, size: int, offset: int, chunks: list, attachments: list):
    header = layout2.parse_record_header(pread(RECORD2_HEADER_SIZE, offset))
    end = offset + index2.record_size(header.desc_length, header.side_length, header.length)
    if end > size:
        raise CorruptArchiveError("record runs past the end of the file")
    desc = pread(header.desc_length, offset + RECORD2_HEADER_SIZE)
    if layout.crc32(desc) != header.desc_crc:
        raise CorruptArchiveError("record descriptor is damaged")
    if header.tag == layout.ATTACHMENT_TAG:
        name = layout2.decode_attachment_desc(desc)
        expected = attachments[-1].record_number + 1 if attachments else 0
        if header.number < expected or any(a.name == name for a in attachments):
            raise CorruptArchiveError("attachment out of sequence")
        if len(attachments) >= layout2.MAX_ATTACHMENTS:
            raise CorruptArchiveError("too many attachments")
        number = None if header.number == len(attachments) else header.number
        return AttachmentEntry(len(attachments), name, offset, header.length, None, header.desc_length, number), end
    expected = chunks[-1].record_number + 1 if chunks else 0
    next_item = chunks[-1].stop_item if chunks else 0
    if not _continues(header.number, expected, header.first_item, next_item):
        raise CorruptArchiveError("chunk out of sequence")
    scheme, shapes, side = layout2.decode_chunk_desc(desc, header.item_count)
    if bool(side) != (header.side_length > 0):
        raise CorruptArchiveError("side arrays and side section out of step")
    number = None if header.number == len(chunks) else header.number
    entry = ChunkEntry(len(chunks), offset, header.length, header.first_item, header.item_count, None, None, {},
                       version=2, scheme=scheme, shapes=shapes, side=side, desc_length=header.desc_length,
                       side_length=header.side_length, number=number)
    return entry, end


def _scan_v1(pread: Pread, size: int, header_end: int) -> list[ChunkEntry]:
    entries: list[ChunkEntry] = []
    offset: int | None = header_end
    while offset is not None and offset + layout.RECORD_HEADER_SIZE <= size:
        try:
            header = layout.parse_record_header(pread(layout.RECORD_HEADER_SIZE, offset))
        except CorruptArchiveError:
            header = None
        end = offset + layout.RECORD_HEADER_SIZE + (header.length if header else 0)
        expected = entries[-1].record_number + 1 if entries else 0
        next_item = entries[-1].stop_item if entries else 0
        if (header is None or header.item_count < 1 or end > size
                or not _continues(header.chunk, expected, header.first_item, next_item)):
            offset = next_record_header(pread, size, offset + 1, (layout.RECORD_TAG,), layout.RECORD_HEADER_SIZE)
            continue
        number = None if header.chunk == len(entries) else header.chunk
        entries.append(ChunkEntry(len(entries), offset, header.length, header.first_item, header.item_count,
                                  None, None, {}, number=number))
        offset = end
    return entries


def check_record(pread: Pread, entry, tag: bytes, desc: bytes, side_length: int, first_item: int, item_count: int,
                 more: int) -> tuple[layout2.Record2Header, bytes]:
    """Read a v2 record's header, descriptor and the ``more`` bytes after it; check them against the index.

    ``desc`` is the descriptor the index implies (re-encoded from its typed fields). Returns the header and
    the ``more`` bytes. Raises CorruptArchiveError (no path, no chunk number) on any disagreement.
    """
    head = RECORD2_HEADER_SIZE + len(desc)
    buf = pread(head + more, entry.offset)
    if len(buf) < head + more:
        raise CorruptArchiveError("the file ends inside this record")
    header = layout2.parse_record_header(buf)
    expected = (tag, entry.record_number, first_item, item_count, len(desc), side_length, entry.length)
    if tuple(header[:7]) != expected:
        raise CorruptArchiveError(f"record header {tuple(header[1:7])} disagrees with the index {expected[1:]}")
    got = buf[RECORD2_HEADER_SIZE:head]
    if layout.crc32(got) != header.desc_crc or got != desc:
        raise CorruptArchiveError("record descriptor is damaged or disagrees with the index")
    return header, buf[head:]


def check_chunk_record(pread: Pread, entry: ChunkEntry, more: int):
    """(record header, the ``more`` bytes after the descriptor) of chunk ``entry``, checked against the index."""
    if entry.version == 1:
        header = layout.parse_record_header(pread(layout.RECORD_HEADER_SIZE, entry.offset))
        expected = (entry.record_number, entry.first_item, entry.item_count, entry.length)
        if header[:4] != expected:
            raise CorruptArchiveError(
                f"record header (chunk, first_item, item_count, length) = {tuple(header[:4])} "
                f"disagrees with the index {expected}"
            )
        return header, b""
    desc = layout2.encode_chunk_desc(entry.scheme, entry.shapes, entry.side)
    return check_record(pread, entry, layout.RECORD_TAG, desc, entry.side_length, entry.first_item,
                        entry.item_count, more)


def check_bytes(data: bytes, crc: int, checksum: str | None, what: str) -> None:
    """crc32 from the record, and BLAKE2b-128 from the index unless the entry was recovered."""
    if layout.crc32(data) != crc:
        raise CorruptArchiveError(f"{what} does not match its crc32")
    if checksum is not None and not hmac.compare_digest(layout.payload_checksum(data), checksum):
        raise CorruptArchiveError(f"{what} does not match its checksum in the index")
