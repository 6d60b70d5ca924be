"""The typed index of format version 2: entries to JSON and back, validated against the file's geometry."""

from __future__ import annotations

from typing import Any

from bbarc.errors import CorruptArchiveError

from .layout import CHECKSUM_PREFIX, RECORD2_HEADER_SIZE, AttachmentEntry, ChunkEntry, is_count
from .layout2 import DESC_MAX, MAX_ATTACHMENTS, MAX_ITEMS, check_attachment_name, chunk_fields

CHUNK_KEYS = ("chunk", "offset", "desc_length", "side_length", "length", "first_item", "item_count",
              "scheme", "shapes", "side", "checksum", "side_checksum", "raw_hash")
ATTACHMENT_KEYS = ("attachment", "name", "offset", "desc_length", "length", "checksum")
INDEX_KEYS = {"chunks", "attachments", "final"}


def chunk_to_json(e: ChunkEntry) -> dict:
    return {
        "chunk": e.index, "offset": e.offset, "desc_length": e.desc_length, "side_length": e.side_length,
        "length": e.length, "first_item": e.first_item, "item_count": e.item_count, "scheme": e.scheme,
        "shapes": [[list(shape), count] for shape, count in e.shapes],
        "side": [[s.name, s.dtype, list(s.shape)] for s in e.side],
        "checksum": e.checksum, "side_checksum": e.side_checksum, "raw_hash": e.raw_hash,
    }


def attachment_to_json(e: AttachmentEntry) -> dict:
    return {"attachment": e.index, "name": e.name, "offset": e.offset, "desc_length": e.desc_length,
            "length": e.length, "checksum": e.checksum}


def index_to_json(chunks: list[ChunkEntry], attachments: list[AttachmentEntry], final: dict) -> dict:
    return {"chunks": [chunk_to_json(e) for e in chunks],
            "attachments": [attachment_to_json(e) for e in attachments], "final": final}


def _checksum(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(CHECKSUM_PREFIX) and len(value) == len(CHECKSUM_PREFIX) + 32


def _object(raw: Any, keys: tuple[str, ...], what: str) -> dict:
    if not isinstance(raw, dict) or set(raw) != set(keys):
        raise CorruptArchiveError(f"{what} is not an object with exactly the keys {', '.join(keys)}")
    return raw


def _chunk(i: int, raw: Any, memo: dict) -> ChunkEntry:
    raw = _object(raw, CHUNK_KEYS, f"index entry {i}")
    ints = [raw[k] for k in ("chunk", "offset", "desc_length", "side_length", "length", "first_item", "item_count")]
    if (
        not all(is_count(v) for v in ints)
        or not _checksum(raw["checksum"])
        or not (raw["side_checksum"] is None or _checksum(raw["side_checksum"]))
        or not isinstance(raw["raw_hash"], str)
    ):
        raise CorruptArchiveError(f"index entry {i} has mistyped fields")
    index, offset, desc_length, side_length, length, first_item, item_count = ints
    if not 1 <= item_count <= MAX_ITEMS - first_item or not 1 <= desc_length <= DESC_MAX:
        raise CorruptArchiveError(f"index entry {i} declares {item_count} items or a {desc_length}-byte descriptor")
    # Chunks mostly repeat one another's fields: check each distinct combination once (repr is exact for JSON).
    key = repr((item_count, raw["scheme"], raw["shapes"], raw["side"]))
    if key not in memo:
        memo[key] = chunk_fields(raw["scheme"], raw["shapes"], raw["side"], item_count, CorruptArchiveError)
    scheme, shapes, side = memo[key]
    if bool(side) != (side_length > 0) or (raw["side_checksum"] is None) != (side_length == 0):
        raise CorruptArchiveError(f"index entry {i} has side arrays and side section out of step")
    return ChunkEntry(index, offset, length, first_item, item_count, raw["checksum"], raw["raw_hash"], {},
                      version=2, scheme=scheme, shapes=shapes, side=side, desc_length=desc_length,
                      side_length=side_length, side_checksum=raw["side_checksum"])


def _attachment(i: int, raw: Any) -> AttachmentEntry:
    raw = _object(raw, ATTACHMENT_KEYS, f"attachment entry {i}")
    ints = [raw[k] for k in ("attachment", "offset", "desc_length", "length")]
    if not all(is_count(v) for v in ints) or not _checksum(raw["checksum"]) or not 1 <= ints[2] <= DESC_MAX:
        raise CorruptArchiveError(f"attachment entry {i} has mistyped fields")
    name = check_attachment_name(raw["name"], CorruptArchiveError)
    return AttachmentEntry(ints[0], name, ints[1], ints[3], raw["checksum"], ints[2])


def parse_index(index: dict, header_end: int, index_offset: int):
    """(chunks, attachments, final) of a decoded v2 index, checked to tile the file between header and index."""
    if set(index) != INDEX_KEYS:
        raise CorruptArchiveError("index is not an object with exactly the keys chunks, attachments, final")
    chunks, attachments, final = index["chunks"], index["attachments"], index["final"]
    if not isinstance(chunks, list) or not isinstance(attachments, list) or not isinstance(final, dict):
        raise CorruptArchiveError("index chunks or attachments are not lists, or final is not an object")
    if len(attachments) > MAX_ATTACHMENTS:
        raise CorruptArchiveError(f"index lists {len(attachments)} attachments, more than {MAX_ATTACHMENTS}")
    memo: dict = {}
    entries = [_chunk(i, raw, memo) for i, raw in enumerate(chunks)]
    named = [_attachment(i, raw) for i, raw in enumerate(attachments)]
    check_sequence(entries, named)
    check_tiling(entries, named, header_end, index_offset)
    return entries, named, final


def check_sequence(chunks: list[ChunkEntry], attachments: list[AttachmentEntry]) -> None:
    """Numbers 0, 1, 2... in file order, chunks' item ranges contiguous from 0, attachment names unique."""
    next_item = 0
    for i, e in enumerate(chunks):
        if e.index != i or e.first_item != next_item or (i and e.offset <= chunks[i - 1].offset):
            raise CorruptArchiveError(f"index entry {i} does not follow on from the entry before it")
        next_item += e.item_count
    for i, a in enumerate(attachments):
        if a.index != i or (i and a.offset <= attachments[i - 1].offset):
            raise CorruptArchiveError(f"attachment entry {i} does not follow on from the entry before it")
    if len({a.name for a in attachments}) != len(attachments):
        raise CorruptArchiveError("two attachments have the same name")


def check_tiling(chunks: list, attachments: list, header_end: int, index_offset: int) -> None:
    """Records must follow one another without gaps from ``header_end`` to ``index_offset``."""
    offset = header_end
    for record in sorted(chunks + attachments, key=lambda r: r.offset):
        if record.offset != offset:
            raise CorruptArchiveError(f"index says a record starts at byte {record.offset}, expected {offset}")
        offset = record.record_end
        if offset > index_offset:
            break
    if offset != index_offset:
        raise CorruptArchiveError(f"index records end at byte {offset} but the index starts at byte {index_offset}")


def record_size(desc_length: int, side_length: int, length: int) -> int:
    return RECORD2_HEADER_SIZE + desc_length + side_length + length
