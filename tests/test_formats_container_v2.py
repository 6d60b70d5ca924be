"""Archive container v2: attachments, per-item shapes, side data, a scheme per chunk, recovery, writer errors."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from bbarc.errors import CorruptArchiveError, UsageError
from bbarc.formats import layout, layout2
from bbarc.formats.container import ArchiveReader, ArchiveWriter, AttachmentEntry, ChunkEntry, ShapeRun, SideSpec

META = {"item_dtype": "|u1", "note": "µ-law ✓"}
MODEL = bytes(range(256)) * 40  # stands in for a model file stored in the archive


def labels(n: int, start: int = 0) -> np.ndarray:
    return (np.arange(start, start + n) * 7 % 10).astype(np.int64)


def make_v2(path, n_chunks: int = 4, final: dict | None = None) -> list[bytes]:
    """Chunks of 3 items (alternating schemes, labels), an attachment first and one after chunk 1."""
    data = [bytes((i * 11 + j) % 256 for j in range(20 + i)) for i in range(n_chunks)]
    with ArchiveWriter(path, META, version=2) as w:
        w.add_attachment("model.bbm", MODEL)
        for i, payload in enumerate(data):
            scheme = "stored" if i % 2 else "bits-back"
            w.write_chunk(payload, 3 * i, 3, f"raw{i}", scheme=scheme, item_shapes=(2, 2 + i),
                          side={"labels": labels(3, 3 * i)})
            if i == 1:
                w.add_attachment("notes ✓", b"hello")
        w.close({"item_count": 3 * n_chunks} if final is None else final)
    return data


# -- round trips --------------------------------------------------------------------------------


def test_v2_round_trip(tmp_path):
    path = tmp_path / "a.bbarc"
    data = make_v2(path)
    with ArchiveReader(path) as r:
        assert r.version == 2 and not r.recovered
        assert r.metadata == {**META, "item_count": 12} and r.item_count == 12
        for i, (entry, payload) in enumerate(zip(r.chunks, data)):
            assert isinstance(entry, ChunkEntry) and entry.version == 2 and entry.extra == {}
            assert (entry.index, entry.first_item, entry.item_count, entry.length) == (i, 3 * i, 3, len(payload))
            assert entry.scheme == ("stored" if i % 2 else "bits-back")
            assert entry.shapes == (ShapeRun((2, 2 + i), 3),)
            assert entry.side == (SideSpec("labels", "<i8", (3,)),)
            assert entry.raw_hash == f"raw{i}" and entry.checksum.startswith("blake2b128:")
            assert entry.side_checksum.startswith("blake2b128:")
            assert r.read_chunk(i) == payload
            side = r.read_side(i)
            assert list(side) == ["labels"] and np.array_equal(side["labels"], labels(3, 3 * i))
        assert [r.item_shape(k) for k in range(12)] == [(2, 2 + k // 3) for k in range(12)]
        assert [r.chunk_for_item(k) for k in range(12)] == [k // 3 for k in range(12)]
        assert r.verify() == [(i, None) for i in range(4)]
        assert r.attachment_names() == ["model.bbm", "notes ✓"]
        assert [(a.name, a.length) for a in r.attachments] == [("model.bbm", len(MODEL)), ("notes ✓", 5)]
        assert all(isinstance(a, AttachmentEntry) for a in r.attachments)
        assert r.read_attachment("model.bbm") == MODEL and r.read_attachment("notes ✓") == b"hello"
        assert r.verify_attachments() == [("model.bbm", None), ("notes ✓", None)]
    assert sorted(os.listdir(tmp_path)) == ["a.bbarc"]


def test_empty_v2_archive_and_attachment_only(tmp_path):
    with ArchiveWriter(tmp_path / "e.bbarc", {}, version=2):
        pass
    with ArchiveReader(tmp_path / "e.bbarc") as r:
        assert r.version == 2 and r.chunks == [] and r.attachments == [] and r.item_count == 0
    with ArchiveWriter(tmp_path / "m.bbarc", {}, version=2) as w:
        w.add_attachment("only", b"")
    with ArchiveReader(tmp_path / "m.bbarc") as r:
        assert r.chunks == [] and r.read_attachment("only") == b"" and r.verify() == []


def test_attachments_are_read_without_reading_chunks(tmp_path):
    path = tmp_path / "a.bbarc"
    make_v2(path)
    with ArchiveReader(path) as r:
        chunk = r.chunks[0]
    with open(path, "r+b") as f:  # wreck every chunk's payload
        for entry in ArchiveReader(path).chunks:
            f.seek(entry.payload_offset)
            f.write(b"\xff" * entry.length)
    with ArchiveReader(path) as r:
        assert r.read_attachment("model.bbm") == MODEL
        with pytest.raises(CorruptArchiveError, match="chunk 0"):
            r.read_chunk(chunk.index)
        assert np.array_equal(r.read_side(0)["labels"], labels(3))  # side data sits outside the payload


def test_missing_attachment_names_what_there_is(tmp_path):
    path = tmp_path / "a.bbarc"
    make_v2(path)
    with ArchiveReader(path) as r, pytest.raises(UsageError, match="no attachment named 'x'.*model.bbm"):
        r.read_attachment("x")
    make_v1 = tmp_path / "v1.bbarc"
    with ArchiveWriter(make_v1, {}) as w:
        w.write_chunk(b"abc", 0, 2, "h")
    with ArchiveReader(make_v1) as r:
        assert r.version == 1 and r.attachment_names() == [] and r.read_side(0) == {} and r.item_shape(1) is None
        with pytest.raises(UsageError, match="has: none"):
            r.read_attachment("model.bbm")


# -- shapes -------------------------------------------------------------------------------------


def test_mixed_shapes_in_one_chunk_and_across_chunks(tmp_path):
    path = tmp_path / "s.bbarc"
    shapes = [(4, 5, 3), (4, 5, 3), (7, 2), (4, 5, 3), (1,), (1,), (1,), ()]
    with ArchiveWriter(path, {}, version=2) as w:
        # one call with per-run tuples including numpy ints; adjacent equal runs are merged
        w.write_chunk(b"p0", 0, 4, "h", scheme="bits-back",
                      item_shapes=[((4, 5, 3), 1), ((np.int64(4), 5, 3), 1), ([7, 2], 1), ((4, 5, 3), 1)])
        w.write_chunk(b"p1", 4, 3, "h", scheme="stored", item_shapes=[1])
        w.write_chunk(b"p2", 7, 1, "h", scheme="stored", item_shapes=())
    with ArchiveReader(path) as r:
        assert r.chunks[0].shapes == (ShapeRun((4, 5, 3), 2), ShapeRun((7, 2), 1), ShapeRun((4, 5, 3), 1))
        assert r.chunks[1].shapes == (ShapeRun((1,), 3),) and r.chunks[2].shapes == (ShapeRun((), 1),)
        assert [r.item_shape(k) for k in range(8)] == shapes
        assert all(type(d) is int for k in range(8) for d in r.item_shape(k))
        assert r.chunks[0].item_shape(2) == (7, 2)
        with pytest.raises(UsageError, match="out of range"):
            r.chunks[0].item_shape(4)
        with pytest.raises(UsageError, match="out of range"):
            r.item_shape(8)


@pytest.mark.parametrize("shapes, match", [
    ([((2, 2), 2)], "count 2 items but the chunk holds 3"),
    ([((2, 2), 0), ((2,), 3)], "count must be an int >= 1"),
    ([((2, -1), 3)], "sizes in 0"),
    ([((2.5,), 3)], "sizes in 0"),
    ((1 << 32,), "sizes in 0"),
    ((1 << 25, 1 << 25), "2\\^48 elements"),
    (tuple([1] * 33), "at most 32"),
    ("abc", "shape run"),
    ([(2, 2), (2, 2), (2, 2)], "shape must be a sequence"),
])
def test_bad_shapes_are_refused(tmp_path, shapes, match):
    with ArchiveWriter(tmp_path / "x.bbarc", {}, version=2) as w:
        with pytest.raises(UsageError, match=match):
            w.write_chunk(b"p", 0, 3, "h", scheme="stored", item_shapes=shapes)
        w.write_chunk(b"p", 0, 3, "h", scheme="stored", item_shapes=(2, 2))  # the writer is still usable


# -- side data ----------------------------------------------------------------------------------


def test_side_arrays_of_every_kind(tmp_path):
    path = tmp_path / "side.bbarc"
    side = {
        "labels": np.array([1, 2, 3], dtype=np.uint8),
        "big-endian": np.arange(6, dtype=">f8").reshape(3, 2) / 3,
        "half": np.array([0.5, -1.0, 2.0], dtype=np.float16),
        "flags": np.array([True, False, True]),
        "boxes": np.arange(36, dtype=np.int32).reshape(3, 3, 4)[:, ::2, :],  # not C-contiguous
        "none": np.zeros((3, 0), dtype=np.int16),
        "list": [7, 8, 9],
    }
    with ArchiveWriter(path, {}, version=2) as w:
        w.write_chunk(b"x", 0, 3, "h", scheme="bits-back", item_shapes=(2,), side=side)
        w.write_chunk(b"y", 3, 1, "h", scheme="bits-back", item_shapes=(2,))
    with ArchiveReader(path) as r:
        got = r.read_side(0)
        assert list(got) == list(side)
        for name, value in side.items():
            value = np.asarray(value)
            assert got[name].dtype == value.dtype and np.array_equal(got[name], value), name
        got["labels"][0] = 99  # a fresh, writable copy per call
        assert r.read_side(0)["labels"][0] == 1
        assert r.read_side(1) == {} and r.chunks[1].side == () and r.chunks[1].side_checksum is None


@pytest.mark.parametrize("side, match", [
    ({"labels": np.arange(4)}, "first axis must count the 3 items"),
    ({"labels": np.int64(3)}, "first axis"),
    ({"names": np.array(["a", "b", "c"])}, "dtype"),
    ({"objects": np.array([None, 1, "x"], dtype=object)}, "dtype"),
    ({"c": np.zeros(3, dtype=np.complex64)}, "dtype"),
    ({"": np.arange(3)}, "printable"),
    ({"bad\x1b[31m": np.arange(3)}, "printable"),
    ({1: np.arange(3)}, "printable"),
    ({"x" * 65: np.arange(3)}, "printable"),
    ({f"a{i}": np.arange(3) for i in range(65)}, "at most 64"),
    ({"huge": np.zeros((3, 1 << 22), dtype=np.int16)}, "more than"),
    ([("labels", np.arange(3))], "dict"),
])
def test_bad_side_arrays_are_refused(tmp_path, side, match):
    with ArchiveWriter(tmp_path / "x.bbarc", {}, version=2) as w:
        with pytest.raises(UsageError, match=match):
            w.write_chunk(b"p", 0, 3, "h", scheme="stored", item_shapes=(1,), side=side)


# -- schemes and writer errors ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["", "Bits-Back", "-x", "a" * 33, "bits back", "é", None, 3])
def test_bad_schemes_are_refused(tmp_path, scheme):
    with ArchiveWriter(tmp_path / "x.bbarc", {}, version=2) as w:
        with pytest.raises(UsageError, match="scheme"):
            w.write_chunk(b"p", 0, 1, "h", scheme=scheme, item_shapes=(1,))


def test_schemes_are_free_short_names(tmp_path):
    names = ["bits-back", "stored", "a", "x.y_z-9", "0" * 32]
    with ArchiveWriter(tmp_path / "x.bbarc", {}, version=2) as w:
        for i, scheme in enumerate(names):
            w.write_chunk(b"p", i, 1, "h", scheme=scheme, item_shapes=(1,))
    with ArchiveReader(tmp_path / "x.bbarc") as r:
        assert [c.scheme for c in r.chunks] == names
    assert layout2.SCHEME_BITS_BACK == "bits-back" and layout2.SCHEME_STORED == "stored"


def test_version_specific_arguments(tmp_path):
    with pytest.raises(UsageError, match="version must be one of"):
        ArchiveWriter(tmp_path / "x.bbarc", {}, version=3)
    with ArchiveWriter(tmp_path / "v1.bbarc", {}) as w:
        with pytest.raises(UsageError, match="version 2"):
            w.write_chunk(b"p", 0, 1, "h", scheme="stored", item_shapes=(1,))
        with pytest.raises(UsageError, match="version 2"):
            w.add_attachment("m", b"")
    with ArchiveWriter(tmp_path / "v2.bbarc", {}, version=2) as w:
        with pytest.raises(UsageError, match="extra is format version 1 only"):
            w.write_chunk(b"p", 0, 1, "h", {"header_items": 0}, scheme="stored", item_shapes=(1,))
        with pytest.raises(UsageError, match="needs scheme= and item_shapes="):
            w.write_chunk(b"p", 0, 1, "h", item_shapes=(1,))
        with pytest.raises(UsageError, match="needs scheme= and item_shapes="):
            w.write_chunk(b"p", 0, 1, "h", scheme="stored")
        with pytest.raises(UsageError, match="must start at item 0"):
            w.write_chunk(b"p", 1, 1, "h", scheme="stored", item_shapes=(1,))
        assert w.chunk_count == 0 and w.item_count == 0


@pytest.mark.parametrize("name", ["", "a\nb", "\x1b]8;;http://x\x07", "tab\t", "\u202eevil", "x" * 129, None, b"m"])
def test_bad_attachment_names_are_refused(tmp_path, name):
    with ArchiveWriter(tmp_path / "x.bbarc", {}, version=2) as w:
        with pytest.raises(UsageError, match="attachment name"):
            w.add_attachment(name, b"data")


def test_attachment_rules(tmp_path):
    with ArchiveWriter(tmp_path / "x.bbarc", {}, version=2) as w:
        w.add_attachment("a model.bbm", bytearray(b"1"))
        with pytest.raises(UsageError, match="already has an attachment named"):
            w.add_attachment("a model.bbm", b"2")
        with pytest.raises(UsageError, match="bytes-like"):
            w.add_attachment("text", "not bytes")
        w.add_attachment("x" * 128, memoryview(b"abcd")[1:])
    with ArchiveReader(tmp_path / "x.bbarc") as r:
        assert r.read_attachment("x" * 128) == b"bcd" and r.read_attachment("a model.bbm") == b"1"


def test_oversized_final_is_refused_at_close(tmp_path):
    w = ArchiveWriter(tmp_path / "x.bbarc", {}, version=2)
    with pytest.raises(UsageError, match="final metadata small"):
        w.close({"blob": "a" * (layout.INDEX_FREE_BYTES + 100_000)})  # compresses to little, expands past the bound
    w.abort()
    assert os.listdir(tmp_path) == []


# -- recovery -----------------------------------------------------------------------------------


def test_recovery_scan_rebuilds_chunks_and_attachments(tmp_path):
    path = tmp_path / "a.bbarc"
    data = make_v2(path)
    with ArchiveReader(path) as r:
        full = r.chunks
        index_start = max(e.record_end for e in [*r.chunks, *r.attachments])
    good = path.read_bytes()
    path.write_bytes(good[:index_start] + b"garbage where the index was")
    with pytest.raises(CorruptArchiveError, match="recover=True"):
        ArchiveReader(path)
    with ArchiveReader(path, recover=True) as r:
        assert r.recovered and r.metadata == META and r.version == 2
        assert [(c.first_item, c.item_count, c.scheme, c.shapes, c.side) for c in r.chunks] == [
            (c.first_item, c.item_count, c.scheme, c.shapes, c.side) for c in full]
        assert all(c.checksum is None and c.raw_hash is None and c.side_checksum is None for c in r.chunks)
        assert [r.read_chunk(i) for i in range(4)] == data
        assert np.array_equal(r.read_side(3)["labels"], labels(3, 9))
        assert r.item_shape(11) == (2, 5)
        assert r.read_attachment("notes ✓") == b"hello" and r.read_attachment("model.bbm") == MODEL
        assert all(msg is None for _, msg in r.verify())


def test_truncation_at_every_offset_v2(tmp_path):
    path = tmp_path / "a.bbarc"
    data = make_v2(path, n_chunks=3)
    good = path.read_bytes()
    with ArchiveReader(path) as r:
        header_end = r.attachments[0].offset
        chunk_ends = [e.record_end for e in r.chunks]
        attachment_ends = {a.name: a.record_end for a in r.attachments}
    for cut in range(len(good) - 1, -1, -1):
        os.truncate(path, cut)
        with pytest.raises(CorruptArchiveError):
            ArchiveReader(path)
        try:
            r = ArchiveReader(path, recover=True)
        except CorruptArchiveError:
            assert cut < header_end
            continue
        with r:
            intact = sum(end <= cut for end in chunk_ends)
            assert len(r.chunks) == intact and r.item_count == 3 * intact
            assert [r.read_chunk(i) for i in range(intact)] == data[:intact]
            assert r.attachment_names() == [n for n, end in attachment_ends.items() if end <= cut]
            assert all(msg is None for _, msg in r.verify())
            assert all(msg is None for _, msg in r.verify_attachments())


def test_pickle_reopens_v2(tmp_path):
    path = tmp_path / "a.bbarc"
    make_v2(path)
    with ArchiveReader(path) as r:
        clone = pickle.loads(pickle.dumps(r))
    with clone:
        assert clone.version == 2 and clone.read_attachment("notes ✓") == b"hello"
        assert np.array_equal(clone.read_side(1)["labels"], labels(3, 3))
