"""Archive container v1: round trips, streaming, atomic publish, corruption handling and recovery."""

from __future__ import annotations

import os
import pickle
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest

from bbarc.formats import layout
from bbarc.formats.container import ArchiveReader, ArchiveWriter, ChunkEntry
from bbarc.errors import CorruptArchiveError, UsageError

META = {"model": "vae-mnist", "shape": [28, 28], "dtype": "uint8", "note": "µ-law ✓"}


def payloads(n: int) -> list[bytes]:
    return [bytes((i * 7 + j) % 256 for j in range(10 + i % 5)) for i in range(n)]


def make_archive(path, n: int = 5, final: dict | None = None) -> list[bytes]:
    data = payloads(n)
    with ArchiveWriter(path, META) as w:
        for i, p in enumerate(data):
            w.write_chunk(p, first_item=3 * i, item_count=3, raw_hash=f"raw{i}", extra={"i": i})
        w.close(final if final is not None else {"items": 3 * n, "model": "final-wins"})
    return data


def flip(path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def listing(tmp_path) -> list[str]:
    return sorted(os.listdir(tmp_path))


# -- round trips --------------------------------------------------------------------------------


def test_round_trip(tmp_path):
    path = tmp_path / "a.bbarc"
    data = make_archive(path)
    with ArchiveReader(path) as r:
        assert r.version == 1
        assert r.metadata == {**META, "items": 15, "model": "final-wins"}
        assert r.item_count == 15 and len(r.chunks) == 5 and not r.recovered
        for i, (entry, p) in enumerate(zip(r.chunks, data)):
            assert isinstance(entry, ChunkEntry)
            assert (entry.index, entry.first_item, entry.item_count, entry.length) == (i, 3 * i, 3, len(p))
            assert entry.raw_hash == f"raw{i}" and entry.extra == {"i": i}
            assert entry.checksum.startswith("blake2b128:")
            assert r.read_chunk(i) == p
        assert [r.chunk_for_item(k) for k in range(15)] == [k // 3 for k in range(15)]
        assert r.verify() == [(i, None) for i in range(5)]
    assert listing(tmp_path) == ["a.bbarc"]


def test_chunk_entry_is_immutable(tmp_path):
    make_archive(tmp_path / "a.bbarc")
    with ArchiveReader(tmp_path / "a.bbarc") as r:
        with pytest.raises(AttributeError):
            r.chunks[0].length = 3


def test_empty_archive_and_odd_payloads(tmp_path):
    with ArchiveWriter(tmp_path / "e.bbarc", {}) as w:
        pass
    with ArchiveReader(tmp_path / "e.bbarc") as r:
        assert r.chunks == [] and r.item_count == 0 and r.metadata == {} and r.verify() == []
    with ArchiveWriter(tmp_path / "o.bbarc", {}) as w:
        w.write_chunk(b"", 0, 1, "h")
        w.write_chunk(bytearray(b"xyz"), 1, 2, "h")
        w.write_chunk(memoryview(b"abcd")[1:], 3, 1, "h")
    with ArchiveReader(tmp_path / "o.bbarc") as r:
        assert [r.read_chunk(i) for i in range(3)] == [b"", b"xyz", b"bcd"]


def test_streaming_many_chunks(tmp_path):
    path = tmp_path / "many.bbarc"
    with ArchiveWriter(path, {"kind": "stream"}) as w:
        first = 0
        for i in range(1000):
            count = 1 + i % 4
            w.write_chunk(i.to_bytes(4, "little"), first, count, str(i))
            first += count
            assert not path.exists()
        assert w.chunk_count == 1000 and w.item_count == first
        w.close({"items": first})
    with ArchiveReader(path) as r:
        assert r.item_count == first == r.metadata["items"]
        assert r.read_chunk(999) == (999).to_bytes(4, "little")
        assert r.chunk_for_item(first - 1) == 999 and r.chunk_for_item(0) == 0
        assert r.chunk_for_item(r.chunks[500].first_item) == 500


# -- writer usage errors ------------------------------------------------------------------------


def test_writer_rejects_bad_calls(tmp_path):
    path = tmp_path / "w.bbarc"
    with pytest.raises(UsageError, match="JSON"):
        ArchiveWriter(path, {"x": object()})
    with pytest.raises(UsageError, match="JSON"):
        ArchiveWriter(path, {"x": float("nan")})
    w = ArchiveWriter(path, {})
    w.write_chunk(b"a", 0, 2, "h")
    with pytest.raises(UsageError, match="must start at item 2"):
        w.write_chunk(b"b", 3, 1, "h")
    with pytest.raises(UsageError, match="item_count=0"):
        w.write_chunk(b"b", 2, 0, "h")
    with pytest.raises(UsageError, match="raw_hash"):
        w.write_chunk(b"b", 2, 1, None)
    with pytest.raises(UsageError, match="JSON"):
        w.write_chunk(b"b", 2, 1, "h", extra={"bad": {1, 2}})
    with pytest.raises(UsageError, match="bytes-like"):
        w.write_chunk("text", 2, 1, "h")
    w.write_chunk(b"b", 2, 1, "h")  # still usable after rejected calls
    w.close()
    with pytest.raises(UsageError, match="closed"):
        w.write_chunk(b"c", 3, 1, "h")
    with ArchiveReader(path) as r:
        assert r.item_count == 3
    with pytest.raises(UsageError, match="does not exist"):
        ArchiveWriter(tmp_path / "no-such-dir" / "x.bbarc", {})
    assert listing(tmp_path) == ["w.bbarc"]


# -- atomicity ----------------------------------------------------------------------------------


def test_exception_inside_with_leaves_nothing(tmp_path):
    path = tmp_path / "x.bbarc"
    with pytest.raises(RuntimeError):
        with ArchiveWriter(path, {}) as w:
            w.write_chunk(b"abc", 0, 1, "h")
            temps = [n for n in listing(tmp_path) if n.startswith(".x.bbarc.tmp-")]
            assert len(temps) == 1 and not path.exists()
            raise RuntimeError("boom")
    assert listing(tmp_path) == []


def test_failure_keeps_existing_target(tmp_path):
    path = tmp_path / "x.bbarc"
    path.write_bytes(b"precious")
    with pytest.raises(KeyboardInterrupt):
        with ArchiveWriter(path, {}) as w:
            w.write_chunk(b"abc", 0, 1, "h")
            raise KeyboardInterrupt
    w = ArchiveWriter(path, {})
    w.write_chunk(b"abc", 0, 1, "h")
    w.abort()
    w.abort()
    assert path.read_bytes() == b"precious" and listing(tmp_path) == ["x.bbarc"]


def test_abandoned_writer_cleans_up(tmp_path):
    w = ArchiveWriter(tmp_path / "x.bbarc", {})
    w.write_chunk(b"abc", 0, 1, "h")
    del w
    assert listing(tmp_path) == []


def test_close_replaces_existing_target(tmp_path):
    path = tmp_path / "x.bbarc"
    path.write_bytes(b"old")
    make_archive(path)
    with ArchiveReader(path) as r:
        assert r.item_count == 15


# -- reader errors ------------------------------------------------------------------------------


def test_missing_and_non_files(tmp_path):
    with pytest.raises(UsageError, match="nope.bbarc"):
        ArchiveReader(tmp_path / "nope.bbarc")
    with pytest.raises(UsageError, match="not a regular file"):
        ArchiveReader(tmp_path)


@pytest.mark.parametrize("content", [b"", b"BBA", b"PK\x03\x04 a zip file, not an archive", b"\x00" * 100])
def test_bad_magic(tmp_path, content):
    path = tmp_path / "bad.bbarc"
    path.write_bytes(content)
    with pytest.raises(CorruptArchiveError, match="not a bbarc archive"):
        ArchiveReader(path, recover=True)


def test_text_mode_mangling_is_named(tmp_path):
    path = tmp_path / "a.bbarc"
    make_archive(path)
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
    with pytest.raises(CorruptArchiveError, match="text mode"):
        ArchiveReader(path)


@pytest.mark.parametrize("version", [0, 3, 65535])
def test_wrong_version(tmp_path, version):
    path = tmp_path / "a.bbarc"
    make_archive(path)
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<H", version))
    with pytest.raises(CorruptArchiveError, match=f"version {version} is not supported") as info:
        ArchiveReader(path, recover=True)
    if version > 1:
        assert "newer bbarc" in str(info.value)


def test_closed_reader_and_ranges(tmp_path):
    path = tmp_path / "a.bbarc"
    make_archive(path)
    r = ArchiveReader(path)
    with pytest.raises(UsageError, match="out of range"):
        r.read_chunk(5)
    with pytest.raises(UsageError, match="out of range"):
        r.chunk_for_item(15)
    with pytest.raises(UsageError, match="out of range"):
        r.chunk_for_item(-1)
    r.close()
    r.close()
    with pytest.raises(UsageError, match="closed"):
        r.read_chunk(0)


# -- corruption ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["payload", "record_header"])
def test_damaged_chunk_is_isolated(tmp_path, where):
    path = tmp_path / "a.bbarc"
    data = make_archive(path)
    with ArchiveReader(path) as r:
        entry = r.chunks[2]
    offset = entry.offset + (layout.RECORD_HEADER_SIZE + 3 if where == "payload" else 10)
    flip(path, offset)
    with ArchiveReader(path) as r:
        with pytest.raises(CorruptArchiveError, match="chunk 2") as info:
            r.read_chunk(2)
        assert info.value.chunk == 2 and str(path) in str(info.value)
        for i in (0, 1, 3, 4):
            assert r.read_chunk(i) == data[i]
        report = r.verify()
        assert [i for i, msg in report if msg is not None] == [2]
        assert "chunk 2" in report[2][1]


def test_damaged_footer_every_trailer_byte(tmp_path):
    path = tmp_path / "a.bbarc"
    data = make_archive(path)
    good = path.read_bytes()
    for pos in range(len(good) - layout.TRAILER.size, len(good)):
        path.write_bytes(good)
        flip(path, pos)
        with pytest.raises(CorruptArchiveError, match="recover=True"):
            ArchiveReader(path)
        with ArchiveReader(path, recover=True) as r:
            assert r.recovered and r.recovery_reason
            assert [r.read_chunk(i) for i in range(len(r.chunks))] == data


def test_damaged_index(tmp_path):
    path = tmp_path / "a.bbarc"
    data = make_archive(path)
    with ArchiveReader(path) as r:
        index_start = r.chunks[-1].offset + layout.RECORD_HEADER_SIZE + r.chunks[-1].length
    flip(path, index_start + 20)
    with pytest.raises(CorruptArchiveError, match="index"):
        ArchiveReader(path)
    with ArchiveReader(path, recover=True) as r:
        assert r.metadata == META  # final is lost with the index
        assert [e.first_item for e in r.chunks] == [0, 3, 6, 9, 12]
        assert r.chunks[0].raw_hash is None and r.chunks[0].checksum is None and r.chunks[0].extra == {}
        assert [r.read_chunk(i) for i in range(5)] == data
        assert r.chunk_for_item(14) == 4


def test_damaged_header_metadata(tmp_path):
    path = tmp_path / "a.bbarc"
    make_archive(path)
    flip(path, 20)
    with pytest.raises(CorruptArchiveError, match="header metadata"):
        ArchiveReader(path, recover=True)


def test_truncation_at_every_offset(tmp_path):
    path = tmp_path / "a.bbarc"
    data = make_archive(path, n=4)
    good = path.read_bytes()
    with ArchiveReader(path) as r:
        header_end = r.chunks[0].offset
        ends = [e.offset + layout.RECORD_HEADER_SIZE + e.length for e in r.chunks]
    # Truncating one file downwards is far cheaper than rewriting a file per cut.
    for cut in range(len(good) - 1, -1, -1):
        os.truncate(path, cut)
        with pytest.raises(CorruptArchiveError):
            ArchiveReader(path)
        try:
            r = ArchiveReader(path, recover=True)
        except CorruptArchiveError:
            assert cut < header_end  # only a cut inside the header is unrecoverable
            continue
        with r:
            intact = sum(end <= cut for end in ends)
            assert len(r.chunks) == intact
            assert [r.read_chunk(i) for i in range(intact)] == data[:intact]
            assert all(msg is None for _, msg in r.verify())


def test_recover_on_intact_file_uses_index(tmp_path):
    path = tmp_path / "a.bbarc"
    make_archive(path)
    with ArchiveReader(path, recover=True) as r:
        assert not r.recovered and r.chunks[0].raw_hash == "raw0" and r.metadata["items"] == 15


# -- sharing ------------------------------------------------------------------------------------


def test_threads_share_one_reader(tmp_path):
    path = tmp_path / "a.bbarc"
    data = make_archive(path, n=20)
    with ArchiveReader(path) as r, ThreadPoolExecutor(4) as pool:
        got = list(pool.map(r.read_chunk, [i % 20 for i in range(200)]))
    assert got == [data[i % 20] for i in range(200)]


def test_pickle_reopens(tmp_path):
    path = tmp_path / "a.bbarc"
    data = make_archive(path)
    with ArchiveReader(path) as r:
        clone = pickle.loads(pickle.dumps(r))
    with clone:
        assert clone.read_chunk(4) == data[4] and clone.metadata["items"] == 15
