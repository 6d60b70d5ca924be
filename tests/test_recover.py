"""`bbarc verify` fails on any file that is not whole, `bbarc recover` salvages the intact chunks into a new
archive, and a file replaced while open is refused by the processes that reopen it."""
import json
import pickle
import shutil

import numpy as np
import pytest

import bbarc
from bbarc.errors import CorruptArchiveError
from bbarc.formats.container import ArchiveReader, ArchiveWriter
from tests.helpers import cli


@pytest.fixture(scope="module")
def intact(tmp_path_factory, mnist):
    path = tmp_path_factory.mktemp("recover") / "a.bbarc"
    bbarc.compress(mnist[:40], path, model="mnist-vae", chunk_size=10, labels=np.arange(40) % 10)
    return path


@pytest.fixture()
def archive(tmp_path, intact):
    path = tmp_path / "a.bbarc"
    shutil.copy(intact, path)
    return path


def chunk(path, i):
    with ArchiveReader(path) as r:
        return r.chunks[i]


def cut_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def cut_100(path):
    path.write_bytes(path.read_bytes()[:-100])


def flip_footer(path):
    data = bytearray(path.read_bytes())
    data[-30] ^= 0x10  # inside the trailer's index crc32 or offset
    path.write_bytes(bytes(data))


def flip_index(path):
    data = bytearray(path.read_bytes())
    data[-60] ^= 0x10  # inside the compressed index
    path.write_bytes(bytes(data))


def header_only(path):
    path.write_bytes(path.read_bytes()[: chunk(path, 0).offset])


@pytest.mark.parametrize("damage, intact_chunks", [(cut_half, None), (cut_100, 4), (flip_footer, 4),
                                                   (flip_index, 4), (header_only, 0)])
def test_verify_fails_on_a_file_that_is_not_whole_and_counts_the_intact_chunks(archive, damage, intact_chunks):
    with ArchiveReader(archive) as r:
        ends = [c.record_end for c in r.chunks]
    damage(archive)
    if intact_chunks is None:  # cut in half: the chunks that end before the cut
        intact_chunks = sum(end <= archive.stat().st_size for end in ends)
    run = cli("verify", archive, "-q", check=False)
    assert run.returncode == 3, run.stdout
    text = " ".join(run.stdout.split())
    assert f"a recovery scan finds {intact_chunks} intact chunks" in text and "bbarc recover" in text
    run = cli("verify", archive, "-q", "--json", "--deep", check=False)
    report = json.loads(run.stdout)
    assert run.returncode == 3 and not report["ok"] and not report["footer_ok"]
    assert report["intact_chunks"] == intact_chunks


def test_verify_checks_attachments(tmp_path, archive):
    with_att = tmp_path / "att.bbarc"
    with ArchiveReader(archive) as r, ArchiveWriter(with_att, r.metadata, version=2) as w:
        for c in r.chunks:
            w.write_chunk(r.read_chunk(c.index), c.first_item, c.item_count, c.raw_hash, scheme=c.scheme,
                          item_shapes=c.shapes, side=r.read_side(c.index) or None)
        w.add_attachment("notes", b"x" * 200)
        w.close(final={})
    assert cli("verify", with_att, "-q").returncode == 0
    with ArchiveReader(with_att) as r:
        at = r.attachments[0].payload_offset + 100
    data = bytearray(with_att.read_bytes())
    data[at] ^= 0x01
    with_att.write_bytes(bytes(data))
    run = cli("verify", with_att, "-q", "--json", check=False)
    assert run.returncode == 3 and [a["name"] for a in json.loads(run.stdout)["bad_attachments"]] == ["notes"]


def test_verify_checks_side_data(archive):
    side = chunk(archive, 1)
    data = bytearray(archive.read_bytes())
    data[side.side_offset + side.side_length // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    run = cli("verify", archive, "-q", "--json", check=False)
    assert run.returncode == 3 and [b["index"] for b in json.loads(run.stdout)["bad"]] == [1]


def test_recover_one_damaged_chunk(tmp_path, archive, mnist):
    bad = chunk(archive, 2)
    data = bytearray(archive.read_bytes())
    data[bad.payload_offset + bad.length // 2] ^= 0x10
    archive.write_bytes(bytes(data))
    out = tmp_path / "out.bbarc"
    run = cli("recover", archive, out, "-q", "--json")
    report = json.loads(run.stdout)
    assert report["lost"] == [[20, 30]] and [b["index"] for b in report["bad"]] == [2]
    assert report["kept"] == [dict(old=[0, 20], new=[0, 20]), dict(old=[30, 40], new=[20, 30])]
    assert cli("verify", out, "--deep", "-q").returncode == 0
    keep = np.r_[0:20, 30:40]
    with bbarc.open(out) as a:
        assert len(a) == 30 and a.metadata.item_count == 30 and np.array_equal(a[:], mnist[keep])
        labels = np.concatenate([a.side(c)["labels"] for c in range(a.chunk_count)])
        assert np.array_equal(labels, keep % 10)
    cli("decompress", out, tmp_path / "out.npy")
    assert np.array_equal(np.load(tmp_path / "out.npy"), mnist[keep])


def test_recover_a_truncated_archive(tmp_path, archive, mnist):
    cut = chunk(archive, 3).offset + 20
    archive.write_bytes(archive.read_bytes()[:cut])
    run = cli("recover", archive, tmp_path / "t.bbarc", "-q")
    text = " ".join(run.stdout.split())
    assert "lost items 30..39" in text and "30 of 40 items" in text
    with bbarc.open(tmp_path / "t.bbarc") as a:
        assert np.array_equal(a[:], mnist[:30])
    assert cli("verify", tmp_path / "t.bbarc", "--deep", "-q").returncode == 0


def test_recover_format1_golden_into_format2(tmp_path):
    from tests.golden import __file__ as golden_init
    from pathlib import Path

    golden = Path(golden_init).parent / "mnist-vae-v1.bbarc"
    damaged = tmp_path / "v1.bbarc"
    damaged.write_bytes(golden.read_bytes()[:-50])  # footer gone
    assert cli("verify", damaged, "-q", check=False).returncode == 3
    out = tmp_path / "v2.bbarc"
    cli("recover", damaged, out, "-q")
    with ArchiveReader(out) as r:
        assert r.version == 2
    assert cli("verify", out, "--deep", "-q").returncode == 0
    with bbarc.open(golden) as g, bbarc.open(out) as a:
        assert np.array_equal(g[: len(a)], a[:]) and len(a) == len(g)


def test_recover_never_overwrites_without_force_nor_the_input(tmp_path, archive):
    out = tmp_path / "out.bbarc"
    out.write_bytes(b"keep me")
    run = cli("recover", archive, out, "-q", check=False)
    assert run.returncode == 2 and "--force" in run.stderr and out.read_bytes() == b"keep me"
    before = archive.read_bytes()
    run = cli("recover", archive, archive, "-q", "--force", check=False)
    assert run.returncode == 2 and archive.read_bytes() == before
    cli("recover", archive, out, "-q", "--force")
    assert cli("verify", out, "-q").returncode == 0


def test_recover_nothing_intact_is_an_error(tmp_path, archive):
    header_only(archive)
    run = cli("recover", archive, tmp_path / "out.bbarc", "-q", check=False)
    assert run.returncode == 3 and not (tmp_path / "out.bbarc").exists()


def replace_file(path, other):
    """``other``'s bytes under ``path``, as a new file (a rename, as tools do when they rewrite files)."""
    temp = path.with_name(path.name + ".new")
    shutil.copy(other, temp)
    temp.replace(path)


def test_pickled_archive_refuses_a_replaced_file(tmp_path, archive, mnist):
    other = tmp_path / "other.bbarc"
    bbarc.compress(mnist[40:80], other, model="mnist-vae", chunk_size=10)
    with bbarc.open(archive) as a:
        state = pickle.dumps(a)
        with pickle.loads(state) as same:
            assert np.array_equal(same[3], mnist[3])
        replace_file(archive, other)
        with pytest.raises(CorruptArchiveError, match="changed since it was opened"):
            pickle.loads(state)


def test_decode_workers_refuse_a_replaced_file(tmp_path, archive, mnist):
    other = tmp_path / "other.bbarc"
    bbarc.compress(mnist[40:80], other, model="mnist-vae", chunk_size=10)
    with bbarc.open(archive) as a:
        replace_file(archive, other)  # after this process opened it, before any worker does
        with pytest.raises(CorruptArchiveError, match="changed since it was opened"):
            a.extract(tmp_path / "x.npy", workers=2, lockstep=1)
    assert not (tmp_path / "x.npy").exists()


def test_deep_check_pins_a_forged_chunk_decoded_alone(tmp_path, mnist):
    """A chunk whose payload was rewritten with fresh checksums fails only when decoded; as the only chunk of
    its lockstep group it is reported, not raised."""
    from bbarc import recovery

    source, forged = tmp_path / "s.bbarc", tmp_path / "f.bbarc"
    bbarc.compress(mnist[:20], source, model="mnist-vae", chunk_size=20)
    with ArchiveReader(source) as r, ArchiveWriter(forged, r.metadata, version=2) as w:
        c = r.chunks[0]
        payload = bytearray(r.read_chunk(0))
        payload[-5] ^= 0x01
        w.write_chunk(bytes(payload), 0, c.item_count, c.raw_hash, scheme=c.scheme, item_shapes=c.shapes)
        w.close(final={})
    assert recovery.inspect(forged).ok
    check = recovery.inspect(forged, deep=True)
    assert not check.ok and [r.index for r in check.bad] == [0] and check.lost_ranges() == [(0, 20)]


def test_a_worker_drops_its_copy_of_a_file_replaced_since_and_reopens_it(tmp_path, archive, mnist):
    from bbarc import api

    other = tmp_path / "other.bbarc"
    bbarc.compress(mnist[40:80], other, model="mnist-vae", chunk_size=10)
    with bbarc.open(archive) as a:
        first = api.decode_job(a._args, a.fingerprint, [0])[0]
    replace_file(archive, other)
    with bbarc.open(archive) as b:  # the caller opened the new file: the worker must read it, not its old copy
        second = api.decode_job(b._args, b.fingerprint, [0])[0]
    assert np.array_equal(first, mnist[:10]) and np.array_equal(second, mnist[40:50])
    for kept in api._worker_archives.values():
        kept.close()
    api._worker_archives.clear()


def zero_record_header(path, i):
    """Chunk ``i``'s record header zeroed, and the footer damaged, so only a scan finds the records."""
    entry = chunk(path, i)
    data = bytearray(path.read_bytes())
    data[entry.offset : entry.offset + 16] = bytes(16)
    data[-30] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("block", [1 << 20, 5])  # a tiny scan block puts tags across block boundaries
def test_the_scan_resynchronises_past_a_damaged_record(tmp_path, archive, mnist, monkeypatch, block):
    from bbarc.formats import loading

    monkeypatch.setattr(loading, "SCAN_BLOCK", block)
    zero_record_header(archive, 1)
    with bbarc.open(archive, recover=True) as a:
        assert [(c.first_item, c.item_count) for c in a._reader.chunks] == [(0, 10), (20, 10), (30, 10)]
        assert np.array_equal(a[25], mnist[25]) and np.array_equal(a[30:40], mnist[30:40])
        for bad in (lambda: a[15], lambda: a[5:25]):
            with pytest.raises(CorruptArchiveError, match="item 1[05] was in a damaged record"):
                bad()
        assert np.array_equal(a.side(2)["labels"], np.arange(30, 40) % 10)
    out = tmp_path / "out.bbarc"
    report = json.loads(cli("recover", archive, out, "-q", "--json").stdout)
    assert report["lost"] == [[10, 20]] and report["items"] == 30
    assert cli("verify", out, "--deep", "-q").returncode == 0
    with bbarc.open(out) as a:
        assert np.array_equal(a[:], mnist[np.r_[0:10, 20:40]])


def test_the_scan_resynchronises_past_a_zeroed_stretch_across_records(tmp_path, archive, mnist):
    """A hole (zeros) from the middle of chunk 1's payload into chunk 2's: chunk 1 is found but fails its
    checksum, chunk 2's record is gone, and the scan finds chunk 3 again."""
    first, second = chunk(archive, 1), chunk(archive, 2)
    data = bytearray(archive.read_bytes())
    data[first.payload_offset + 10 : second.offset + 100] = bytes(second.offset + 100 - first.payload_offset - 10)
    data[-30] ^= 0x10
    archive.write_bytes(bytes(data))
    run = cli("verify", archive, "-q", "--json", check=False)
    report = json.loads(run.stdout)
    assert run.returncode == 3 and report["chunks"] == 3 and report["intact_chunks"] == 2
    assert report["lost"] == [[10, 30]] and [b["index"] for b in report["bad"]] == [1]
    with bbarc.open(archive, recover=True) as a:
        assert np.array_equal(a[30:40], mnist[30:40])


def test_a_format1_scan_resynchronises_too(tmp_path):
    from pathlib import Path

    from tests.golden import __file__ as golden_init

    golden = Path(golden_init).parent / "mnist-vae-v1.bbarc"
    damaged = tmp_path / "v1.bbarc"
    damaged.write_bytes(golden.read_bytes())
    with ArchiveReader(golden) as r:
        assert len(r.chunks) >= 3
        gap = r.chunks[1]
    zero_record_header(damaged, 1)
    out = tmp_path / "v2.bbarc"
    report = json.loads(cli("recover", damaged, out, "-q", "--json").stdout)
    assert report["lost"] == [[gap.first_item, gap.stop_item]]
    with bbarc.open(golden) as g, bbarc.open(out) as a:
        keep = np.r_[0 : gap.first_item, gap.stop_item : len(g)]
        assert np.array_equal(a[:], g[:][keep])
