"""Dataset sources (.npy, HDF5, IDX, arrays) and sinks (.npy, HDF5)."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from bbarc.errors import UsageError
from bbarc.formats.idx import read_idx
from bbarc.formats.inputs import open_source
from bbarc.formats.outputs import open_sink

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path: Path, array: np.ndarray) -> Path:
    code = IDX_CODES[array.dtype.type]
    raw = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.name.endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=1)
    path.write_bytes(raw)
    return path


def sample(dtype, shape=(7, 3, 2)) -> np.ndarray:
    values = np.arange(np.prod(shape)).reshape(shape) - 5
    if np.dtype(dtype).kind == "u":
        values = values % 256
    return (values * (1.5 if np.dtype(dtype).kind == "f" else 1)).astype(dtype)


def check_source(src, expected: np.ndarray) -> None:
    assert src.shape == expected.shape and len(src) == expected.shape[0]
    assert src.item_shape == expected.shape[1:]
    assert src.dtype == expected.dtype.newbyteorder("=") and src.dtype.isnative
    got = src.read(0, len(src))
    assert got.dtype.isnative and got.flags.c_contiguous and got.flags.owndata
    np.testing.assert_array_equal(got, expected)
    # backwards and partial reads, as a shuffled loader would do
    for start, stop in [(4, 6), (1, 3), (6, 7), (0, 1), (3, 3)]:
        np.testing.assert_array_equal(src.read(start, stop), expected[start:stop])
    blocks = list(src.iter_blocks(3))
    assert [s for s, _ in blocks] == list(range(0, len(expected), 3))
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), expected)


# -- IDX ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["-ubyte", "-ubyte.gz"])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_idx_dtypes(tmp_path, dtype, suffix):
    expected = sample(dtype)
    path = write_idx(tmp_path / f"data-idx3{suffix}", expected)
    with open_source(str(path)) as src:
        check_source(src, expected)
        assert src.dtype.kind == np.dtype(dtype).kind and src.dtype.itemsize == np.dtype(dtype).itemsize


def test_idx_1d_labels(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    with open_source(write_idx(tmp_path / "labels-idx1-ubyte.gz", labels)) as src:
        assert src.shape == (5,) and src.item_shape == ()
        np.testing.assert_array_equal(src.read(1, 4), labels[1:4])


@pytest.mark.parametrize("suffix", ["-ubyte", "-ubyte.gz"])
def test_read_idx_whole_file(tmp_path, suffix):
    expected = sample(np.int16)
    got = read_idx(write_idx(tmp_path / f"data-idx3{suffix}", expected))
    assert got.dtype == np.dtype(np.int16) and got.dtype.isnative
    np.testing.assert_array_equal(got, expected)
    (tmp_path / "bad-ubyte").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(UsageError, match="not an IDX file"):
        read_idx(tmp_path / "bad-ubyte")


def test_idx_bad_files(tmp_path):
    good = write_idx(tmp_path / "a-ubyte", sample(np.uint8)).read_bytes()
    (tmp_path / "short-ubyte").write_bytes(good[:-1])
    with pytest.raises(UsageError, match="truncated"):
        open_source(tmp_path / "short-ubyte")
    (tmp_path / "magic-ubyte").write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(UsageError, match="not an IDX file"):
        open_source(tmp_path / "magic-ubyte")
    (tmp_path / "code-ubyte").write_bytes(good[:2] + b"\x0a" + good[3:])
    with pytest.raises(UsageError, match="dtype code 0x0A"):
        open_source(tmp_path / "code-ubyte")
    (tmp_path / "short-ubyte.gz").write_bytes(gzip.compress(good[:-5]))
    with open_source(tmp_path / "short-ubyte.gz") as src:
        src.read(0, 2)
        with pytest.raises(UsageError, match="truncated"):
            src.read(0, 7)
    (tmp_path / "notgz-ubyte.gz").write_bytes(good)
    with pytest.raises(UsageError, match="cannot read IDX"):
        open_source(tmp_path / "notgz-ubyte.gz")
    (tmp_path / "empty-ubyte").write_bytes(struct.pack(">BBBBII", 0, 0, 8, 2, 0, 5))
    with pytest.raises(UsageError, match="0 items"):
        open_source(tmp_path / "empty-ubyte")
    (tmp_path / "scalar-ubyte").write_bytes(struct.pack(">BBBB", 0, 0, 8, 0) + b"\x07")
    with pytest.raises(UsageError, match="0-dimensional"):
        open_source(tmp_path / "scalar-ubyte")


def test_real_mnist():
    gz = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    if not gz.exists():
        pytest.skip(f"{gz} not present")
    sums = {}
    if (MNIST_DIR / "MD5SUMS").exists():
        for line in (MNIST_DIR / "MD5SUMS").read_text().splitlines():
            if line.strip():
                digest, name = line.split()
                sums[name.lstrip("*")] = digest
    compressed = gz.read_bytes()
    raw = gzip.decompress(compressed)
    # MD5SUMS lists the .gz files; check whichever form it lists.
    if gz.name in sums:
        assert hashlib.md5(compressed).hexdigest() == sums[gz.name]
    if "t10k-images-idx3-ubyte" in sums:
        assert hashlib.md5(raw).hexdigest() == sums["t10k-images-idx3-ubyte"]
    with open_source(str(gz)) as src:
        assert src.shape == (10000, 28, 28) and src.dtype == np.uint8
        images = np.concatenate([block for _, block in src.iter_blocks(4096)])
        assert hashlib.md5(raw[16:]).hexdigest() == hashlib.md5(images.tobytes()).hexdigest()
        np.testing.assert_array_equal(src.read(9998, 10000), images[9998:])
    np.testing.assert_array_equal(read_idx(gz), images)


# -- npy ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["<i4", ">i4", ">f8", "<u2", "|b1", ">f2", "<i8"])
def test_npy_byte_orders(tmp_path, dtype):
    expected = sample(np.dtype(dtype).newbyteorder("=")).astype(dtype)
    np.save(tmp_path / "a.npy", expected)
    with open_source(tmp_path / "a.npy") as src:
        check_source(src, expected)


def test_npy_fortran_order(tmp_path):
    expected = np.asfortranarray(sample(np.int16))
    np.save(tmp_path / "f.npy", expected)
    with open_source(tmp_path / "f.npy") as src:
        check_source(src, expected)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((0, 28, 28), np.uint8), "0 items"),
        (np.zeros((5, 0), np.uint8), "hold no values"),
        (np.float32(3.0), "0-dimensional"),
        (np.zeros((3, 2), np.complex64), "dtype complex64"),
        (np.zeros(3, dtype=[("a", "i4"), ("b", "f4")]), "cannot store"),
        (np.array(["ab", "c"]), "cannot store"),
        (np.zeros(3, "datetime64[s]"), "cannot store"),
    ],
)
def test_npy_rejected(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(UsageError, match=message):
        open_source(tmp_path / "x.npy")
    with pytest.raises(UsageError, match=message):
        open_source(np.asarray(array))


def test_npy_invalid_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([1, None], dtype=object), allow_pickle=True)
    with pytest.raises(UsageError, match="obj.npy"):
        open_source(tmp_path / "obj.npy")
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(UsageError, match="not a .npy file"):
        open_source(tmp_path / "text.npy")
    np.save(tmp_path / "cut.npy", np.arange(100))
    os.truncate(tmp_path / "cut.npy", 150)
    with pytest.raises(UsageError, match="truncated"):
        open_source(tmp_path / "cut.npy")


# -- in-memory and generic errors ---------------------------------------------------------------


def test_array_source_copies():
    array = sample(np.float32)
    with open_source(array) as src:
        assert src.description == "in-memory array"
        check_source(src, array)
        src.read(0, 2)[:] = 0
    assert array[0, 0, 0] != 0


def test_generic_errors(tmp_path):
    with pytest.raises(UsageError, match="missing.npy"):
        open_source(tmp_path / "missing.npy")
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(UsageError, match="don't know the format"):
        open_source(tmp_path / "data.csv")
    with pytest.raises(UsageError, match="numpy array"):
        open_source([1, 2, 3])
    (tmp_path / "d.npy").mkdir()
    with pytest.raises(UsageError, match="directory"):
        open_source(tmp_path / "d.npy")
    np.save(tmp_path / "a.npy", sample(np.uint8))
    with pytest.raises(UsageError, match="only applies to HDF5"):
        open_source(tmp_path / "a.npy", dataset="/x")
    with open_source(tmp_path / "a.npy") as src:
        with pytest.raises(UsageError, match="outside"):
            src.read(5, 9)
        with pytest.raises(UsageError, match="outside"):
            src.read(3, 2)
        with pytest.raises(UsageError, match="at least 1"):
            src.iter_blocks(0)


# -- HDF5 ---------------------------------------------------------------------------------------


@pytest.fixture
def h5file(tmp_path) -> Path:
    path = tmp_path / "mnist.h5"
    with h5py.File(path, "w") as f:
        f["grp/ds"] = sample(np.uint8)
        f["other"] = sample(np.dtype(">i4"))
        f["scalar"] = 3.0
    return path


def test_hdf5_dataset_forms(h5file):
    expected = sample(np.uint8)
    with open_source(f"{h5file}:/grp/ds") as src:
        assert src.description == f"{h5file}:/grp/ds"
        check_source(src, expected)
    with open_source(str(h5file), dataset="grp/ds") as src:
        check_source(src, expected)
    with open_source(f"{h5file}:grp/ds", dataset="/grp/ds") as src:
        check_source(src, expected)
    with open_source(h5file, dataset="/other") as src:  # big-endian in the file
        check_source(src, sample(np.dtype(">i4")))


def test_hdf5_errors(h5file, tmp_path):
    with pytest.raises(UsageError, match="/grp/ds.*/other") as info:
        open_source(f"{h5file}:/nope")
    assert "does not exist" in str(info.value)
    with pytest.raises(UsageError, match="several datasets: /grp/ds, /other, /scalar"):
        open_source(h5file)
    with pytest.raises(UsageError, match="is a group"):
        open_source(h5file, dataset="/grp")
    with pytest.raises(UsageError, match="0-dimensional"):
        open_source(h5file, dataset="/scalar")
    with pytest.raises(UsageError, match="given twice"):
        open_source(f"{h5file}:/grp/ds", dataset="/other")
    with h5py.File(tmp_path / "one.hdf5", "w") as f:
        f["only"] = np.zeros((0, 4), np.float32)
        f.create_group("empty_group")
    with pytest.raises(UsageError, match="0 items"):
        open_source(tmp_path / "one.hdf5")
    (tmp_path / "fake.h5").write_bytes(b"not hdf5" * 20)
    with pytest.raises(UsageError, match="as HDF5"):
        open_source(tmp_path / "fake.h5")


def test_hdf5_single_dataset_is_picked(tmp_path):
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["deep/inside/x"] = sample(np.float64)
    with open_source(tmp_path / "s.h5") as src:
        assert src.description.endswith(":/deep/inside/x")
        check_source(src, sample(np.float64))


# -- sinks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["<u1", ">i4", "<f8", "|b1", "<f2"])
@pytest.mark.parametrize("name", ["out.npy", "out.h5", "out.hdf5:/grp/images"])
def test_sink_round_trip(tmp_path, dtype, name):
    expected = sample(np.dtype(dtype).newbyteorder("=")).astype(dtype)
    target = tmp_path / name
    with open_sink(str(target), expected.shape, expected.dtype) as sink:
        sink.write(4, expected[4:])  # out of order on purpose
        sink.write(0, expected[:4])
        assert not any(p.name.startswith("out") for p in tmp_path.iterdir())
    with open_source(str(target)) as src:
        assert src.shape == expected.shape
        np.testing.assert_array_equal(src.read(0, len(src)), expected)
    if name.endswith(".npy"):
        assert np.load(target).dtype == np.dtype(dtype)
    else:
        path, _, ds = str(target).partition(":")
        with h5py.File(path, "r") as f:
            assert f[ds or "/data"].dtype == np.dtype(dtype)
    assert len(list(tmp_path.iterdir())) == 1


def test_sink_dataset_option(tmp_path):
    with open_sink(tmp_path / "o.h5", (2, 3), np.int16, dataset="pixels") as sink:
        sink.write(0, np.ones((2, 3), np.int16))
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert list(f) == ["pixels"] and f["pixels"].shape == (2, 3)


@pytest.mark.parametrize("name", ["x.npy", "x.h5"])
def test_sink_atomicity(tmp_path, name):
    target = tmp_path / name
    with pytest.raises(RuntimeError):
        with open_sink(target, (4, 2), np.uint8) as sink:
            sink.write(0, np.zeros((2, 2), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"precious")
    with pytest.raises(UsageError, match="item 2 was never written"):
        with open_sink(target, (4, 2), np.uint8, overwrite=True) as sink:
            sink.write(0, np.zeros((2, 2), np.uint8))
    assert target.read_bytes() == b"precious" and list(tmp_path.iterdir()) == [target]


def test_sink_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="must be .npy or .h5"):
        open_sink(tmp_path / "x-ubyte", (2,), np.uint8)
    with pytest.raises(UsageError, match="don't know the format"):
        open_sink(tmp_path / "x.bin", (2,), np.uint8)
    with pytest.raises(UsageError, match="cannot store"):
        open_sink(tmp_path / "x.npy", (2,), np.complex64)
    with pytest.raises(UsageError, match="0 items"):
        open_sink(tmp_path / "x.npy", (0, 3), np.uint8)
    with pytest.raises(UsageError, match="does not exist"):
        open_sink(tmp_path / "nodir" / "x.npy", (2,), np.uint8)
    with open_sink(tmp_path / "x.npy", (3, 2), np.uint8) as sink:
        with pytest.raises(UsageError, match="don't fit"):
            sink.write(0, np.zeros((1, 3), np.uint8))
        with pytest.raises(UsageError, match="outside"):
            sink.write(2, np.zeros((2, 2), np.uint8))
        with pytest.raises(UsageError, match="exactly"):
            sink.write(0, np.full((1, 2), 300, np.int64))
        with pytest.raises(UsageError, match="exactly"):
            sink.write(0, np.full((1, 2), 0.5))
        sink.write(0, np.full((3, 2), 7, np.int64))  # wider dtype is fine when values fit
    assert np.load(tmp_path / "x.npy").tolist() == [[7, 7]] * 3


def test_stored_dtype_keeps_byte_order(tmp_path):
    np.save(tmp_path / "be.npy", sample(np.int32).astype(">i4"))
    with open_source(tmp_path / "be.npy") as src:
        assert src.stored_dtype == np.dtype(">i4") and src.dtype == np.dtype("=i4")
        assert [s for s, _ in src.iter_blocks(np.int64(4))] == [0, 4]


def test_formats_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, bbarc.formats.container, bbarc.formats.inputs, bbarc.formats.outputs\n"
        "heavy = {'torch', 'numba', 'h5py', 'bbarc.codecs', 'bbarc.plugins'} & {m if m.startswith('bbarc') else m.split('.')[0] for m in sys.modules}\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
