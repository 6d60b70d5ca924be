"""Damaged and crafted v2 containers: every failure is a CorruptArchiveError, never a traceback, wrong data or a
large allocation. Crafted files get their checksums recomputed after each edit, so the parser itself is tested."""

from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import pytest
import zstandard

from bbarc.errors import CorruptArchiveError
from bbarc.formats import layout
from bbarc.formats.container import ArchiveReader, ArchiveWriter


def small_v2(path) -> None:
    with ArchiveWriter(path, {"m": 1}, version=2) as w:
        w.add_attachment("model", b"weights!")
        w.write_chunk(b"payload-zero", 0, 2, "r0", scheme="bits-back", item_shapes=(2, 2),
                      side={"labels": np.array([4, 2], dtype=np.int16)})
        w.add_attachment("notes", b"n")
        w.write_chunk(b"payload-one!", 2, 3, "r1", scheme="stored", item_shapes=[((3,), 2), ((1, 1), 1)])
        w.close({"item_count": 5})


def snapshot(r: ArchiveReader) -> dict:
    """Everything a reader gives, or the error each part raises (only CorruptArchiveError is allowed)."""
    out: dict = {"chunks": [(c.first_item, c.item_count, c.scheme, c.shapes, c.side) for c in r.chunks],
                 "names": r.attachment_names()}
    for i in range(len(r.chunks)):
        for what, read in (("chunk", r.read_chunk), ("side", r.read_side)):
            try:
                value = read(i)
            except CorruptArchiveError:
                value = "corrupt"
            out[what, i] = {k: v.tolist() for k, v in value.items()} if isinstance(value, dict) else value
    for name in r.attachment_names():
        try:
            out["attachment", name] = r.read_attachment(name)
        except CorruptArchiveError:
            out["attachment", name] = "corrupt"
    r.verify()
    r.verify_attachments()
    return out


def agrees(got: dict, good: dict) -> bool:
    """Every part that read without error equals the intact file's; recovery may find a prefix of the chunks."""
    n = len(got["chunks"])
    if got["chunks"] != good["chunks"][:n] or not set(got["names"]) <= set(good["names"]):
        return False
    return all(value == "corrupt" or value == good[key] for key, value in got.items() if key not in ("chunks", "names"))


def test_every_byte_flip_is_caught_or_harmless(tmp_path):
    path = tmp_path / "a.bbarc"
    small_v2(path)
    good_bytes = path.read_bytes()
    with ArchiveReader(path) as r:
        good = snapshot(r)
    for pos in range(len(good_bytes)):
        for mask in (0x01, 0x80):
            damaged = bytearray(good_bytes)
            damaged[pos] ^= mask
            path.write_bytes(bytes(damaged))
            for recover in (False, True):
                try:
                    r = ArchiveReader(path, recover=recover)
                except CorruptArchiveError:
                    continue
                with r:
                    assert agrees(snapshot(r), good), (pos, mask, recover)


# -- crafted index frames -----------------------------------------------------------------------


def replace_index(path, frame: bytes) -> None:
    """Put ``frame`` where the index was, with a trailer (geometry, crc32) that matches it."""
    data = path.read_bytes()
    index_offset, _, _, version, _ = layout.TRAILER.unpack(data[-layout.TRAILER.size:])
    trailer = layout.TRAILER.pack(index_offset, len(frame), layout.crc32(frame), version, layout.END_MAGIC)
    path.write_bytes(data[:index_offset] + frame + trailer)


def edit_index(path, edit) -> None:
    data = path.read_bytes()
    index_offset, length, _, _, _ = layout.TRAILER.unpack(data[-layout.TRAILER.size:])
    index = json.loads(zstandard.ZstdDecompressor().decompress(data[index_offset:index_offset + length]))
    raw = edit(index)
    raw = raw if isinstance(raw, bytes) else json.dumps(index).encode()
    replace_index(path, zstandard.ZstdCompressor().compress(raw))


def declaring_frame(size: int) -> bytes:
    """A zstd frame header that claims ``size`` bytes of content, then one 1-byte RLE block."""
    return b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + size.to_bytes(8, "little") + bytes([0b1011, 0, 0, 0x41])


@pytest.fixture(params=[1, 2])
def archive(request, tmp_path):
    path = tmp_path / f"v{request.param}.bbarc"
    if request.param == 2:
        small_v2(path)
    else:
        with ArchiveWriter(path, {"m": 1}) as w:
            w.write_chunk(b"payload", 0, 2, "r0")
    return path


def opens_corrupt(path, match: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(CorruptArchiveError, match=match):
            ArchiveReader(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


@pytest.mark.parametrize("size", [1 << 40, 1 << 63, 50 << 20])
def test_index_frame_declaring_too_much(archive, size):
    replace_index(archive, declaring_frame(size))
    opens_corrupt(archive, "declares")


def test_index_bomb_is_refused_before_decompressing(archive):
    edit_index(archive, lambda index: json.dumps(index).encode() + b" " * (60 << 20))
    opens_corrupt(archive, "declares")


def test_index_frames_without_size_or_with_extra_bytes(archive):
    raw = b'{"chunks": [], "final": {}}'
    replace_index(archive, zstandard.ZstdCompressor(write_content_size=False).compress(raw))
    opens_corrupt(archive, "does not declare")
    replace_index(archive, zstandard.ZstdCompressor().compress(raw) + b"\x00junk")
    opens_corrupt(archive, "does not decompress")
    replace_index(archive, b"not zstd at all")
    opens_corrupt(archive, "not a zstd frame")


@pytest.mark.parametrize("raw", [
    b'{"chunks": [], "final": {"x": NaN}}',
    b'{"chunks": [], "final": {"x": -Infinity}}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"chunks": [], "final": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001,
    b"\xff\xfe not utf-8",
    b'{"chunks": [], "final": {"n": 1' + b"0" * 5000 + b"}}",
])
def test_index_json_that_is_not_strict(archive, raw):
    replace_index(archive, zstandard.ZstdCompressor().compress(raw))
    opens_corrupt(archive, "JSON|index")


# -- crafted v2 index entries -------------------------------------------------------------------


def chunk0(index, **changes):
    index["chunks"][0].update(changes)


V2_EDITS = {
    "unknown key": lambda ix: chunk0(ix, colour="red"),
    "missing key": lambda ix: ix["chunks"][0].pop("scheme"),
    "extra top key": lambda ix: ix.update(more=1),
    "no attachments key": lambda ix: ix.pop("attachments"),
    "string offset": lambda ix: chunk0(ix, offset=str(ix["chunks"][0]["offset"])),
    "bool count": lambda ix: chunk0(ix, item_count=True),
    "float length": lambda ix: chunk0(ix, length=12.0),
    "huge item count": lambda ix: chunk0(ix, item_count=1 << 60),
    "run count mismatch": lambda ix: chunk0(ix, shapes=[[[2, 2], 3]]),
    "negative dim": lambda ix: chunk0(ix, shapes=[[[2, -2], 2]]),
    "too many dims": lambda ix: chunk0(ix, shapes=[[[1] * 40, 2]]),
    "elements overflow": lambda ix: chunk0(ix, shapes=[[[1 << 31, 1 << 31], 2]]),
    "run not a pair": lambda ix: chunk0(ix, shapes=[[[2, 2], 1, 1]]),
    "a million runs": lambda ix: chunk0(ix, shapes=[[[1], 1]] * 1_000_000),
    "object dtype": lambda ix: chunk0(ix, side=[["labels", "|O", [2]]]),
    "side first dim": lambda ix: chunk0(ix, side=[["labels", "<i2", [3]]]),
    "side too big": lambda ix: chunk0(ix, side=[["labels", "<i8", [2, 1 << 30]]]),
    "side name control": lambda ix: chunk0(ix, side=[["lab\x1bels", "<i2", [2]]]),
    "side without section": lambda ix: chunk0(ix, side_checksum=None),
    "bad scheme": lambda ix: chunk0(ix, scheme="Bits Back"),
    "bad checksum": lambda ix: chunk0(ix, checksum="md5:00"),
    "null raw hash": lambda ix: chunk0(ix, raw_hash=None),
    "chunks swapped": lambda ix: ix["chunks"].reverse(),
    "gap": lambda ix: chunk0(ix, offset=ix["chunks"][0]["offset"] + 1),
    "record past index": lambda ix: chunk0(ix, length=ix["chunks"][0]["length"] + 10_000),
    "huge descriptor": lambda ix: chunk0(ix, desc_length=(1 << 20) + 1),
    "items skip": lambda ix: ix["chunks"][1].update(first_item=3),
    "duplicate name": lambda ix: ix["attachments"][1].update(name="model"),
    "name with newline": lambda ix: ix["attachments"][0].update(name="mod\nel"),
    "attachment overlaps": lambda ix: ix["attachments"][1].update(offset=ix["chunks"][0]["offset"]),
    "attachments numbered wrong": lambda ix: ix["attachments"][1].update(attachment=5),
    "too many attachments": lambda ix: ix["attachments"].extend([ix["attachments"][0]] * 1100),
    "final not object": lambda ix: ix.update(final=[1]),
}


@pytest.mark.parametrize("edit", V2_EDITS.values(), ids=V2_EDITS.keys())
def test_crafted_v2_index_entries(tmp_path, edit):
    path = tmp_path / "a.bbarc"
    small_v2(path)
    edit_index(path, edit)
    opens_corrupt(path, "index|attachment|record|side|scheme|shape|name|dtype|items")
    with ArchiveReader(path, recover=True) as r:  # the records themselves are intact
        assert r.recovered and r.item_count == 5 and r.attachment_names() == ["model", "notes"]


# -- crafted v2 records -------------------------------------------------------------------------


def patch(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def rewrite_record_header(path, offset: int, **fields) -> None:
    """Change fields of the v2 record header at ``offset`` and recompute its own crc32."""
    names = ["tag", "number", "first_item", "item_count", "desc_length", "side_length", "length",
             "desc_crc", "side_crc", "payload_crc"]
    with open(path, "rb") as f:
        f.seek(offset)
        values = dict(zip(names, layout.RECORD2_BODY.unpack(f.read(layout.RECORD2_BODY.size))))
    values.update(fields)
    body = layout.RECORD2_BODY.pack(*(values[n] for n in names))
    patch(path, offset, body + layout.CRC.pack(layout.crc32(body)))


def test_side_frame_declaring_terabytes(tmp_path):
    path = tmp_path / "a.bbarc"
    small_v2(path)
    with ArchiveReader(path) as r:
        entry = r.chunks[0]
    bomb = declaring_frame(1 << 40)[:entry.side_length]  # same length: the geometry stays valid
    assert len(bomb) == entry.side_length >= 13  # the frame header is whole
    patch(path, entry.side_offset, bomb)
    rewrite_record_header(path, entry.offset, side_crc=layout.crc32(bomb))
    edit_index(path, lambda ix: chunk0(ix, side_checksum=layout.payload_checksum(bomb)))
    with ArchiveReader(path) as r:
        assert r.read_chunk(0) == b"payload-zero"  # the payload does not depend on the side section
        tracemalloc.start()
        try:
            with pytest.raises(CorruptArchiveError, match="side data of chunk 0.*declares") as info:
                r.read_side(0)
            assert tracemalloc.get_traced_memory()[1] < 8 << 20
        finally:
            tracemalloc.stop()
        assert info.value.chunk == 0
        assert [i for i, msg in r.verify() if msg] == [0]


@pytest.mark.parametrize("fields", [
    {"desc_length": 0xFFFFFFFF}, {"desc_length": 0}, {"length": 1 << 62}, {"item_count": 0},
    {"item_count": 1 << 63}, {"tag": b"XXXX"}, {"number": 7}, {"side_length": 5},
])
def test_crafted_record_headers(tmp_path, fields):
    path = tmp_path / "a.bbarc"
    small_v2(path)
    with ArchiveReader(path) as r:
        entry = r.chunks[1]
    rewrite_record_header(path, entry.offset, **fields)
    with ArchiveReader(path) as r:
        assert r.read_chunk(0) == b"payload-zero"
        with pytest.raises(CorruptArchiveError, match="chunk 1"):
            r.read_chunk(1)
    os.truncate(path, r.chunks[-1].record_end)  # drop the index: the scan must stop before chunk 1
    with ArchiveReader(path, recover=True) as r:
        assert len(r.chunks) == 1 and r.attachment_names() == ["model", "notes"]


def test_descriptor_disagreeing_with_the_index(tmp_path):
    """A record whose descriptor was rewritten consistently (crc32 too) no longer matches its index entry."""
    path = tmp_path / "a.bbarc"
    small_v2(path)
    with ArchiveReader(path) as r:
        entry = r.chunks[1]
    desc = bytearray(path.read_bytes()[entry.offset + layout.RECORD2_HEADER_SIZE:entry.side_offset])
    assert desc[1:7] == b"stored"
    desc[1:7] = b"stoned"
    patch(path, entry.offset + layout.RECORD2_HEADER_SIZE, bytes(desc))
    rewrite_record_header(path, entry.offset, desc_crc=layout.crc32(bytes(desc)))
    with ArchiveReader(path) as r, pytest.raises(CorruptArchiveError, match="descriptor"):
        r.read_chunk(1)
    os.truncate(path, entry.record_end)
    with ArchiveReader(path, recover=True) as r:  # without the index, the record stands on its own
        assert r.chunks[1].scheme == "stoned" and r.read_chunk(1) == b"payload-one!"


@pytest.mark.parametrize("desc", [
    b"\x09bits-back\x01\x02\x02\x02\x02\x00\x00",  # trailing byte
    b"\x09bits-back\x01\x02\x02\x82\x00\x02\x00",  # non-minimal number
    b"\x09bits-back\x01\x02\x02\x02",  # cut short
    b"\x09bits-back\x01\x21" + b"\x01" * 33 + b"\x02\x00",  # 33 dims
    b"\x09bits-back\x01\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x02\x02\x00",  # number over 64 bits
    b"\x09bits\xff\xfeck\x01\x02\x02\x02\x02\x00",  # not UTF-8
    b"\xff\xff\xff\xff\x0f",  # string longer than the descriptor
])
def test_malformed_descriptors_stop_the_scan(tmp_path, desc):
    path = tmp_path / "a.bbarc"
    with ArchiveWriter(path, {}, version=2) as w:
        w.write_chunk(b"p", 0, 2, "h", scheme="bits-back", item_shapes=(2, 2))
    with ArchiveReader(path) as r:
        entry = r.chunks[0]
    data = path.read_bytes()[:entry.offset]
    header = layout.RECORD2_BODY.pack(layout.RECORD_TAG, 0, 0, 2, len(desc), 0, 1, layout.crc32(desc), 0,
                                      layout.crc32(b"p"))
    path.write_bytes(data + header + layout.CRC.pack(layout.crc32(header)) + desc + b"p")
    with ArchiveReader(path, recover=True) as r:
        assert r.chunks == []
