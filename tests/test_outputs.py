"""Outputs (issue 15, items 6-9 and labels out): nothing overwritten unless asked, never an input, HDF5 outputs
add a dataset, every write atomic, and I/O failures clean errors (exit 6) that leave no temp file."""
import errno
import os
import signal
import stat
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import bbarc
from bbarc.errors import OutputError, UsageError
from bbarc.formats import atomic, outputs
from tests.helpers import cli

DATA = np.arange(30 * 4 * 5, dtype=np.uint8).reshape(30, 4, 5)
LABELS = (np.arange(30) % 10).astype(np.int64)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outputs")
    np.save(tmp / "labels.npy", LABELS)
    bbarc.compress(DATA, tmp / "a.bbarc", model="zstd", chunk_size=7, labels=str(tmp / "labels.npy"))
    return tmp / "a.bbarc"


def no_temps(folder) -> bool:
    return not [p for p in os.listdir(folder) if ".tmp-" in p]


# -- item 6: never overwrite without being asked, never an input ------------------------------------------------
def test_compress_refuses_existing_archive_unless_forced(tmp_path):
    np.save(tmp_path / "x.npy", DATA)
    (tmp_path / "a.bbarc").write_bytes(b"precious")
    run = cli("compress", tmp_path / "x.npy", tmp_path / "a.bbarc", "-m", "zstd", "-q", check=False)
    assert run.returncode == 2 and "--force" in run.stderr
    assert (tmp_path / "a.bbarc").read_bytes() == b"precious"
    os.chmod(tmp_path / "a.bbarc", 0o640)
    cli("compress", tmp_path / "x.npy", tmp_path / "a.bbarc", "-m", "zstd", "-q", "--force")
    assert stat.S_IMODE(os.stat(tmp_path / "a.bbarc").st_mode) == 0o640  # permission bits kept
    assert np.array_equal(bbarc.open(tmp_path / "a.bbarc")[:], DATA) and no_temps(tmp_path)


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_compress_never_writes_over_its_input(tmp_path, how):
    np.save(tmp_path / "x.npy", DATA)
    before = (tmp_path / "x.npy").read_bytes()
    target = tmp_path / ("x.npy" if how == "same" else "alias.npy")
    if how == "symlink":
        target.symlink_to(tmp_path / "x.npy")
    elif how == "hardlink":
        os.link(tmp_path / "x.npy", target)
    with pytest.raises(UsageError, match="is the input"):
        bbarc.compress(str(tmp_path / "x.npy"), target, model="zstd", overwrite=True)
    assert (tmp_path / "x.npy").read_bytes() == before and no_temps(tmp_path)


def test_compress_never_writes_over_its_hdf5_input_or_labels(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = DATA
    with pytest.raises(UsageError, match="is the input"):
        bbarc.compress(f"{tmp_path / 'd.h5'}:/x", tmp_path / "d.h5", model="zstd", overwrite=True)
    np.save(tmp_path / "l.npy", LABELS)
    with pytest.raises(UsageError, match="is the input"):
        bbarc.compress(DATA, tmp_path / "l.npy", model="zstd", labels=str(tmp_path / "l.npy"), overwrite=True)
    assert np.array_equal(np.load(tmp_path / "l.npy"), LABELS)


def test_decompress_refuses_existing_output_and_its_archive(archive, tmp_path):
    out = tmp_path / "o.npy"
    out.write_bytes(b"precious")
    run = cli("decompress", archive, out, "-q", check=False)
    assert run.returncode == 2 and "--force" in run.stderr and out.read_bytes() == b"precious"
    (tmp_path / "alias.npy").symlink_to(archive)
    before = archive.read_bytes()
    with pytest.raises(UsageError, match="is the input"):
        bbarc.decompress(archive, tmp_path / "alias.npy", overwrite=True)
    assert archive.read_bytes() == before
    os.chmod(out, 0o600)
    bbarc.decompress(archive, out, overwrite=True)
    assert np.array_equal(np.load(out), DATA) and stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert no_temps(tmp_path)


def test_get_refuses_existing_output_unless_forced(archive, tmp_path):
    out = tmp_path / "one.npy"
    out.write_bytes(b"precious")
    run = cli("get", archive, 3, "-o", out, check=False)
    assert run.returncode == 2 and "--force" in run.stderr and out.read_bytes() == b"precious"
    cli("get", archive, 3, "-o", out, "--force")
    assert np.array_equal(np.load(out), DATA[3])


# -- item 7: HDF5 outputs add a dataset ---------------------------------------------------------------------------
def test_hdf5_output_keeps_other_datasets(archive, tmp_path):
    keep = tmp_path / "keep.h5"
    with h5py.File(keep, "w") as f:
        f["old"] = np.arange(5)
        f["grp/inner"] = np.ones(3)
    bbarc.decompress(archive, f"{keep}:/new")
    with h5py.File(keep) as f:
        assert np.array_equal(f["old"][:], np.arange(5)) and np.array_equal(f["grp/inner"][:], np.ones(3))
        assert np.array_equal(f["new"][:], DATA)
    with pytest.raises(UsageError, match="--force"):
        bbarc.decompress(archive, f"{keep}:/old")
    bbarc.decompress(archive, f"{keep}:/old", overwrite=True)
    with h5py.File(keep) as f:
        assert sorted(f) == ["grp", "new", "old"] and np.array_equal(f["old"][:], DATA)
    assert no_temps(tmp_path)


def test_hdf5_add_is_atomic(archive, tmp_path, monkeypatch):
    keep = tmp_path / "keep.h5"
    with h5py.File(keep, "w") as f:
        f["old"] = np.arange(5)
    before = keep.read_bytes()

    def fail(self, start, stop, array):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.H5Sink, "_store", fail)
    with pytest.raises(OutputError, match="disk is full"):
        bbarc.decompress(archive, f"{keep}:/new")
    assert keep.read_bytes() == before and no_temps(tmp_path)


def test_hdf5_output_over_a_file_that_is_not_hdf5(archive, tmp_path):
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(UsageError, match="not an HDF5 file"):
        bbarc.decompress(archive, tmp_path / "x.h5")
    bbarc.decompress(archive, tmp_path / "x.h5", overwrite=True)
    with h5py.File(tmp_path / "x.h5") as f:
        assert np.array_equal(f["data"][:], DATA)


# -- item 8: get goes through the same safe path -----------------------------------------------------------------
def test_get_writes_exactly_the_named_file(archive, tmp_path):
    run = cli("get", archive, "2:5", "-o", tmp_path / "out.txt", check=False)
    assert run.returncode == 2 and ".npy" in run.stderr
    assert os.listdir(tmp_path) == []
    run = cli("get", archive, "2:5", "-o", f"{tmp_path / 'g.h5'}:/items")
    assert "g.h5" in run.stderr
    with h5py.File(tmp_path / "g.h5") as f:
        assert np.array_equal(f["items"][:], DATA[2:5])


def test_get_replaces_a_symlink_never_its_target(archive, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (tmp_path / "link.npy").symlink_to(victim)
    run = cli("get", archive, 1, "-o", tmp_path / "link.npy", check=False)
    assert run.returncode == 2 and victim.read_bytes() == b"precious"
    cli("get", archive, 1, "-o", tmp_path / "link.npy", "--force")
    assert victim.read_bytes() == b"precious" and not (tmp_path / "link.npy").is_symlink()
    assert np.array_equal(np.load(tmp_path / "link.npy"), DATA[1])


# -- item 9: I/O failures ----------------------------------------------------------------------------------------
def test_npy_output_reserves_space_first(archive, tmp_path, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OutputError, match="disk is full"):
        bbarc.decompress(archive, tmp_path / "o.npy")
    assert os.listdir(tmp_path) == []


def test_compress_write_failure_is_an_output_error(tmp_path, monkeypatch):
    from bbarc.formats import container

    def fail(self, payload, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(container.ArchiveWriter, "write_chunk", fail)
    with pytest.raises(OutputError, match="read-only"):
        bbarc.compress(DATA, tmp_path / "a.bbarc", model="zstd")
    assert os.listdir(tmp_path) == []


@pytest.fixture
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs (root only); skipped where it cannot be mounted."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_is_a_clean_error(tmp_path, tiny_fs):
    big = np.random.default_rng(0).integers(0, 256, size=(200, 32, 32), dtype=np.uint8)  # 200 KiB, incompressible
    bbarc.compress(big, tmp_path / "big.bbarc", model="zstd", chunk_size=50)
    for args in (["decompress", tmp_path / "big.bbarc", tiny_fs / "o.npy", "-q"],
                 ["decompress", tmp_path / "big.bbarc", f"{tiny_fs / 'o.h5'}:/x", "-q"],  # HDF5 crashed on ENOSPC
                 ["get", tmp_path / "big.bbarc", "0:200", "-o", tiny_fs / "g.npy"],
                 ["compress", tmp_path / "big.bbarc", tiny_fs / "c.bbarc", "-m", "zstd", "-q"]):
        np.save(tmp_path / "big.npy", big)
        if args[0] == "compress":
            args[1] = tmp_path / "big.npy"
        run = cli(*args, check=False)
        assert run.returncode == 6 and "disk is full" in run.stderr and "Traceback" not in run.stderr, args
        assert os.listdir(tiny_fs) == [], args


def test_hdf5_reservation_is_cut_off_again(archive, tmp_path):
    bbarc.decompress(archive, f"{tmp_path / 'o.h5'}:/x")
    bbarc.decompress(archive, f"{tmp_path / 'o.h5'}:/y")
    assert os.path.getsize(tmp_path / "o.h5") < 2 * DATA.nbytes + 64 * 1024  # no reserved margin left behind
    with h5py.File(tmp_path / "o.h5") as f:
        assert np.array_equal(f["x"][:], DATA) and np.array_equal(f["y"][:], DATA)


def test_read_only_folder_is_a_clean_error(archive, tmp_path, tiny_fs):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    run = cli("decompress", archive, tiny_fs / "o.npy", "-q", check=False)
    assert run.returncode == 6 and "read-only" in run.stderr and "Traceback" not in run.stderr
    run = cli("get", archive, 1, "-o", tiny_fs / "o.npy", check=False)
    assert run.returncode == 6 and "read-only" in run.stderr


def test_sigterm_cleans_up_like_ctrl_c(archive, tmp_path):
    # A decompress slowed down inside the writer, so the signal lands while the temp file exists.
    script = ("import time, sys; from bbarc.formats import outputs; store = outputs.NpySink._store\n"
              "def slow(self, *a):\n    time.sleep(0.5); store(self, *a)\n"
              "outputs.NpySink._store = slow\nfrom bbarc import cli\n"
              f"sys.argv = ['bbarc', 'decompress', {str(archive)!r}, {str(tmp_path / 'o.npy')!r}, '-q']\ncli.main()")
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while no_temps(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not no_temps(tmp_path), "the temp file never appeared"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(archive, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".o.npy.tmp-{dead.pid}-0123456789ab"
    stale.write_bytes(b"left by kill -9")
    live = tmp_path / f".o.npy.tmp-{os.getppid()}-0123456789ab"  # a live process's write is left alone
    live.write_bytes(b"in progress")
    bbarc.decompress(archive, tmp_path / "o.npy")
    assert sorted(os.listdir(tmp_path)) == sorted(["o.npy", live.name])
    assert atomic.remove_stale_temps(tmp_path / "o.npy") == []


# -- item 12: labels come back out ---------------------------------------------------------------------------------
def test_labels_come_back_out_of_decompress_and_get(archive, tmp_path):
    cli("decompress", archive, tmp_path / "o.npy", "--labels", tmp_path / "l.npy", "-q")
    assert np.array_equal(np.load(tmp_path / "o.npy"), DATA) and np.array_equal(np.load(tmp_path / "l.npy"), LABELS)
    cli("get", archive, "5:19", "-o", tmp_path / "g.npy", "--labels", tmp_path / "gl.npy")
    assert np.array_equal(np.load(tmp_path / "gl.npy"), LABELS[5:19])
    cli("get", archive, "28", "-o", tmp_path / "one.npy", "--labels", tmp_path / "onel.npy")
    assert np.load(tmp_path / "onel.npy") == LABELS[28]
    bbarc.compress(DATA, tmp_path / "nolabels.bbarc", model="zstd")
    with pytest.raises(UsageError, match="stores no labels"):
        bbarc.decompress(tmp_path / "nolabels.bbarc", tmp_path / "x.npy", labels=tmp_path / "xl.npy")
    assert not (tmp_path / "x.npy").exists()


def test_an_output_that_appears_while_it_is_written_is_kept(tmp_path):
    """The no-overwrite check at the start of a write is repeated atomically when the file is put in place: a
    file created meanwhile (another process, a user) is kept, the write fails cleanly, no temp file is left."""
    from bbarc.formats.container import ArchiveWriter
    from bbarc.formats.outputs import open_sink

    out = tmp_path / "x.npy"
    sink = open_sink(out, (2, 3), np.uint8)
    sink.write(0, np.ones((2, 3), np.uint8))
    out.write_bytes(b"theirs")
    with pytest.raises(UsageError, match="appeared while bbarc was writing it.*--force"):
        sink.close()
    assert out.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]

    archive = tmp_path / "a.bbarc"
    writer = ArchiveWriter(archive, {"format": "test"}, version=2, overwrite=False)
    archive.write_bytes(b"theirs too")
    with pytest.raises(UsageError, match="appeared while"):
        writer.close()
    assert archive.read_bytes() == b"theirs too" and len(list(tmp_path.iterdir())) == 2

    with open_sink(out, (1,), np.uint8, overwrite=True) as sink:  # asked to replace: it does
        sink.write(0, np.zeros(1, np.uint8))
    assert np.load(out).tolist() == [0]
