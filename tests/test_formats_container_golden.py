"""Golden container files of format version 2 must keep reading, field for field (tests/golden/container-v2-*.bin)."""
from pathlib import Path

import numpy as np

from bbarc.formats.container import ArchiveReader, ShapeRun
from tests.golden.make_container_golden import container_v2_basic, write_container_v2_basic

GOLDEN = Path(__file__).resolve().parent / "golden"


def expected_chunks(spec: dict) -> list[tuple]:
    return [step[1:] for step in spec["steps"] if step[0] == "chunk"]


def check_container_v2_basic(r: ArchiveReader, recovered: bool = False) -> None:
    spec = container_v2_basic()
    assert r.version == 2 and r.recovered == recovered
    assert r.metadata == (spec["metadata"] if recovered else {**spec["metadata"], **spec["final"]})
    attachments = [step[1:] for step in spec["steps"] if step[0] == "attachment"]
    assert r.attachment_names() == [name for name, _ in attachments]
    for name, data in attachments:
        assert r.read_attachment(name) == data
    chunks = expected_chunks(spec)
    assert len(r.chunks) == len(chunks) and r.item_count == sum(c[1] for c in chunks)
    item = 0
    for i, (payload, count, raw_hash, scheme, runs, side) in enumerate(chunks):
        entry = r.chunks[i]
        assert (entry.first_item, entry.item_count, entry.scheme) == (item, count, scheme)
        assert entry.shapes == tuple(ShapeRun(*run) for run in runs)
        assert entry.raw_hash == (None if recovered else raw_hash)
        assert r.read_chunk(i) == payload
        got = r.read_side(i)
        assert list(got) == list(side)
        for name, value in side.items():
            assert got[name].dtype == value.dtype and np.array_equal(got[name], value)
        shapes = [shape for shape, n in runs for _ in range(n)]
        assert [r.item_shape(item + k) for k in range(count)] == shapes
        item += count
    assert all(msg is None for _, msg in r.verify()) and all(msg is None for _, msg in r.verify_attachments())


def test_golden_container_v2_reads():
    with ArchiveReader(GOLDEN / "container-v2-basic.bin") as r:
        check_container_v2_basic(r)


def test_golden_container_v2_recovers_without_its_footer(tmp_path):
    data = (GOLDEN / "container-v2-basic.bin").read_bytes()
    with ArchiveReader(GOLDEN / "container-v2-basic.bin") as r:
        index_offset = max(e.record_end for e in [*r.chunks, *r.attachments])
    (tmp_path / "cut.bin").write_bytes(data[:index_offset])
    with ArchiveReader(tmp_path / "cut.bin", recover=True) as r:
        check_container_v2_basic(r, recovered=True)


def test_todays_writer_writes_what_the_golden_file_says(tmp_path):
    """Header, attachment records, record headers, descriptors and payloads are byte-identical. Side sections are
    zstd frames, whose bytes may differ across zstd releases, so they (and what depends on their length or crc32:
    later offsets, the side crc32, the header crc32, the index) are compared decoded."""
    write_container_v2_basic(tmp_path / "now.bin")
    now_bytes, old_bytes = (tmp_path / "now.bin").read_bytes(), (GOLDEN / "container-v2-basic.bin").read_bytes()
    with ArchiveReader(tmp_path / "now.bin") as now, ArchiveReader(GOLDEN / "container-v2-basic.bin") as old:
        check_container_v2_basic(now)
        assert now_bytes[:now.chunks[0].offset] == old_bytes[:old.chunks[0].offset]  # header, first attachment
        for a, b in zip(now.chunks, old.chunks):
            for start, stop in ((0, 28), (32, 44)):  # all but the side length and the crc32s that follow it
                assert now_bytes[a.offset + start:a.offset + stop] == old_bytes[b.offset + start:b.offset + stop]
            assert now_bytes[a.offset + 56:a.side_offset] == old_bytes[b.offset + 56:b.side_offset]
            assert now_bytes[a.payload_offset:a.record_end] == old_bytes[b.payload_offset:b.record_end]
        for a, b in zip(now.attachments, old.attachments):
            assert now_bytes[a.offset:a.record_end] == old_bytes[b.offset:b.record_end]
