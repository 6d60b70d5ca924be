"""bbarc.data (training from archives) and the labels accessor (Archive.labels / side_data)."""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bbarc
from bbarc import api
from bbarc.data import ArchiveDataset, ShuffledArchive, worker_shares
from bbarc.errors import UsageError
from tests.golden.make_golden import golden_inputs
from tests.helpers import ROOT, SHARED_MNIST, load_sample

GOLDEN = Path(__file__).resolve().parent / "golden"
N = 1000


@pytest.fixture(scope="module")
def sample():
    return load_sample()


@pytest.fixture(scope="module")
def small(tmp_path_factory, sample):
    """1,000 items in 28 chunks (the last one short) under the zstd model; each label is the item's index, so
    a sample names the item it must be."""
    path = tmp_path_factory.mktemp("data") / "small.bbarc"
    bbarc.compress(sample, path, model="zstd", chunk_size=37, labels=np.arange(N, dtype=np.int64))
    return path


@pytest.fixture(scope="module")
def vae(tmp_path_factory, sample):
    path = tmp_path_factory.mktemp("data") / "vae.bbarc"
    bbarc.compress(sample[:300], path, model="mnist-vae", chunk_size=64, labels=np.arange(300, dtype=np.int64))
    return path


def labels_of(samples) -> list[int]:
    return [int(label) for _, label in samples]


def test_import_loads_neither_torch_nor_numba():
    code = ("import sys, bbarc.data\n"
            "heavy = {'torch', 'numba', 'bbarc.api', 'bbarc.torch_data'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_shuffled_archive_is_a_torch_iterable_dataset_and_pickles(small):
    torch_data = pytest.importorskip("torch.utils.data")
    ds = ShuffledArchive(small, labels=True, seed=3)
    ds.set_epoch(2)
    ds.load_state_dict(ds.state_dict(50))
    assert isinstance(ds, torch_data.IterableDataset) and isinstance(ds, ShuffledArchive)
    copy = pickle.loads(pickle.dumps(ds))
    assert type(copy) is type(ds) and copy.epoch == 2 and len(copy) == len(ds) == N - 50
    assert labels_of(copy) == labels_of(ds)


def test_the_order_is_fixed_by_seed_and_epoch(small):
    def order(seed, epoch):
        ds = ShuffledArchive(small, labels=True, seed=seed)
        ds.set_epoch(epoch)
        return labels_of(ds.samples())

    first = order(0, 0)
    assert first == order(0, 0) and sorted(first) == list(range(N))
    assert first != order(0, 1) and first != order(1, 0) and first != sorted(first)
    ds = ShuffledArchive(small, labels=True, shuffle=False)
    assert labels_of(ds.samples()) == list(range(N))


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("workers", [1, 2, 5])
def test_every_item_exactly_once_across_ranks_and_workers(small, sample, world_size, workers):
    seen, items = [], []
    for rank in range(world_size):
        ds = ShuffledArchive(small, labels=True, seed=7, buffer_chunks=3, rank=rank, world_size=world_size)
        ds.set_epoch(1)
        mine = [s for w in range(workers) for s in ds.samples(w, workers)]
        assert len(mine) == len(ds)
        seen += labels_of(mine)
        items += [item for item, _ in mine]
    assert sorted(seen) == list(range(N))
    assert all(np.array_equal(item, sample[label]) for item, label in zip(items, seen))


def test_each_chunk_is_decoded_once_per_epoch(vae, sample, monkeypatch):
    decoded = []
    original = api.Archive.decode_chunks

    def counting(self, indices):
        decoded.extend(indices)
        return original(self, indices)

    monkeypatch.setattr(api.Archive, "decode_chunks", counting)
    ds = ShuffledArchive(vae, labels=True, seed=1, buffer_chunks=2)
    for epoch in (0, 1):
        decoded.clear()
        ds.set_epoch(epoch)
        out = [s for w in range(2) for s in ds.samples(w, 2)]
        assert sorted(decoded) == list(range(5))  # 300 items in chunks of 64
        assert sorted(labels_of(out)) == list(range(300))
        assert all(np.array_equal(item, sample[label]) for item, label in out)
    # resuming skips the buffers already seen without decoding them
    full = labels_of(ds.samples())
    order = ds.chunk_order()
    first_buffer = sum(min(64, 300 - 64 * c) for c in order[:2])
    ds.load_state_dict(ds.state_dict(first_buffer + 1))
    decoded.clear()
    assert labels_of(ds.samples()) == full[first_buffer + 1:]
    assert decoded == order[2:]


@pytest.mark.parametrize("seen", [0, 1, 36, 37, 500, 999, 1000])
def test_resuming_in_one_process_yields_exactly_the_rest(small, seen):
    ds = ShuffledArchive(small, labels=True, seed=5, buffer_chunks=4)
    ds.set_epoch(3)
    full = labels_of(ds)
    state = ds.state_dict(seen)
    again = ShuffledArchive(small, labels=True, seed=5, buffer_chunks=4)
    again.load_state_dict(state)
    assert again.epoch == 3 and len(again) == N - seen
    assert labels_of(again) == full[seen:]
    again.set_epoch(4)  # the resume point belongs to its epoch only
    assert len(again) == N


def test_worker_shares_follow_the_data_loaders_turns():
    assert worker_shares([10, 10], 0, 4) == [0, 0]
    assert worker_shares([10, 10], 8, 4) == [4, 4]
    assert worker_shares([10, 10], 12, 4) == [8, 4]
    assert worker_shares([5, 10], 13, 4) == [5, 8]  # worker 0 ran out after a short batch
    with pytest.raises(UsageError):
        worker_shares([5, 5], 11, 4)


def run_loader(ds, batch_size=16, workers=2, stop=None):
    from torch.utils.data import DataLoader

    xs, ys = [], []
    for k, (x, y) in enumerate(DataLoader(ds, batch_size=batch_size, num_workers=workers)):
        if k == stop:
            break
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def test_data_loader_with_two_workers_and_resuming(small, sample):
    pytest.importorskip("torch")
    ds = ShuffledArchive(small, labels=True, seed=2, buffer_chunks=3, batch_size=16)
    ds.set_epoch(1)
    x, y = run_loader(ds)
    assert sorted(y.tolist()) == list(range(N)) and np.array_equal(x, sample[y])
    assert np.array_equal(run_loader(ds)[1], y)  # the same order again
    # interrupted after 20 batches, then resumed from the saved state in a new dataset
    _, first = run_loader(ds, stop=20)
    resumed = ShuffledArchive(small, labels=True, seed=2, buffer_chunks=3, batch_size=16)
    resumed.load_state_dict(ds.state_dict(len(first)))
    x2, rest = run_loader(resumed)
    assert len(first) == 320 and sorted(first.tolist() + rest.tolist()) == list(range(N))
    assert np.array_equal(x2, sample[rest])


def test_map_style_dataset(small, sample):
    ds = ArchiveDataset(small, labels=True, transform=lambda item: item.astype(np.float32) / 255)
    assert len(ds) == N
    item, label = ds[-1]
    assert label == N - 1 and item.dtype == np.float32 and np.array_equal(item * 255, sample[-1])
    assert [int(label) for _, label in ds] == list(range(N))  # the iteration protocol stops at IndexError
    with pytest.raises(IndexError):
        ds[N]
    with pytest.raises(UsageError):
        ds["3"]
    plain = ArchiveDataset(small)
    assert np.array_equal(plain[5], sample[5])
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    x, y = next(iter(DataLoader(ds, batch_size=100, num_workers=2, shuffle=True)))
    assert np.array_equal(x.numpy() * 255, sample[y.numpy()])


def test_bad_arguments_are_usage_errors(small, tmp_path, sample):
    bbarc.compress(sample[:50], tmp_path / "bare.bbarc", model="zstd")
    with pytest.raises(UsageError, match="no labels"):
        ShuffledArchive(tmp_path / "bare.bbarc", labels=True)
    with pytest.raises(UsageError, match="no labels"):
        ArchiveDataset(tmp_path / "bare.bbarc", labels=True)
    with pytest.raises(UsageError, match="rank 2"):
        ShuffledArchive(small, rank=2, world_size=2)
    with pytest.raises(UsageError, match="buffer_chunks"):
        ShuffledArchive(small, buffer_chunks=0)
    ds = ShuffledArchive(small, seed=1)
    with pytest.raises(UsageError, match="seed"):
        ShuffledArchive(small, seed=2).load_state_dict(ds.state_dict(10))
    with pytest.raises(UsageError, match="fingerprint"):
        ShuffledArchive(tmp_path / "bare.bbarc", seed=1).load_state_dict(ds.state_dict(10))


def test_labels_without_decoding(small, tmp_path, sample, monkeypatch):
    with bbarc.open(small) as a:
        monkeypatch.setattr(api.Archive, "decode_chunks", lambda *_: pytest.fail("labels decoded a chunk"))
        assert np.array_equal(a.labels, np.arange(N))
        assert a.side_data("labels", -1) == N - 1 and a.side_data("labels", 40) == 40
        assert np.array_equal(a.side_data("labels", slice(30, 900, 7)), np.arange(30, 900, 7))
        assert np.array_equal(a.side_data("labels", slice(None, None, -3)), np.arange(N)[::-3])
        assert a.side_data("labels", slice(5, 5)).shape == (0,)
        with pytest.raises(UsageError, match="no side data named 'weights'"):
            a.side_data("weights")
        with pytest.raises(UsageError, match="out of range"):
            a.side_data("labels", N)
    bbarc.compress(sample[:50], tmp_path / "bare.bbarc", model="zstd")
    with bbarc.open(tmp_path / "bare.bbarc") as a:
        assert a.labels is None


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.bbarc")), ids=lambda p: p.name)
def test_labels_of_golden_archives_v1_and_v2(path):
    _, _, labels, _ = golden_inputs()[path.name.rsplit("-v", 1)[0]]
    with bbarc.open(path) as a:
        if labels is None:
            assert a.labels is None
        else:
            assert np.array_equal(a.labels, labels) and a.labels.dtype == labels.dtype
            assert np.array_equal(a.side_data("labels", slice(3, None, 2)), labels[3::2])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_persistent_workers_follow_set_epoch_and_resuming(small, context):
    """Workers that outlive an epoch (persistent_workers) take the epoch and resume point set in the main
    process; under spawn the dataset reaches them pickled."""
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    ds = ShuffledArchive(small, labels=True, seed=4, buffer_chunks=5, batch_size=50)
    loader = DataLoader(ds, batch_size=50, num_workers=1, persistent_workers=True, multiprocessing_context=context)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        got = np.concatenate([y.numpy() for _, y in loader]).tolist()
        assert got == labels_of(ds.samples())
    full = got
    ds.load_state_dict(ds.state_dict(300))
    assert np.concatenate([y.numpy() for _, y in loader]).tolist() == full[300:]


def test_without_torch_a_shuffled_archive_is_a_plain_iterable(small, monkeypatch):
    import bbarc.data

    real = bbarc.data.importlib.util.find_spec
    monkeypatch.setattr(bbarc.data.importlib.util, "find_spec", lambda name: None if name == "torch" else real(name))
    ds = ShuffledArchive(small, labels=True, seed=9)
    assert type(ds) is ShuffledArchive
    assert sorted(labels_of(ds)) == list(range(N)) and labels_of(ds) == labels_of(pickle.loads(pickle.dumps(ds)))


@pytest.mark.skipif(not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists(), reason="needs ../shared MNIST")
def test_loader_benchmark_script(tmp_path):
    import json

    subprocess.run([sys.executable, ROOT / "benchmarks" / "loader.py", "--data", SHARED_MNIST, "--limit", "600",
                    "--runs", "2", "--batch-size", "64", "--out", tmp_path], check=True, capture_output=True)
    rows = json.loads((tmp_path / "loader.json").read_text())["rows"]
    assert [r["store"] for r in rows] == ["bbarc", "npy (memmap)", "PNG files (Pillow)", "HDF5 gzip"]
    assert all(r["exact"] and r["same_order_every_run"] and r["bytes"] > 0 for r in rows)
    assert "items/s" in (tmp_path / "loader.txt").read_text()
