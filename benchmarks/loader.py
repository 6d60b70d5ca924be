"""Training from an archive: one shuffled epoch over MNIST's 60,000 training images through a PyTorch DataLoader.

    python benchmarks/loader.py [--data DIR] [--workers 2] [--batch-size 256] [--runs 3] [--out DIR]
                                [--limit N]

``--data`` (default ../shared/data/mnist, or $BBARC_DATA) holds MNIST's IDX files. Stores the images and labels
as a bbarc archive (mnist-vae, the default chunk size, labels stored), as .npy (read through a memmap), as a
folder of PNG files (Pillow) and as HDF5 with gzip (one chunk per item, the layout for reading items at random),
then runs one shuffled epoch through ``DataLoader(num_workers=--workers, batch_size=--batch-size)`` from each,
``--runs`` times, and reports items per second (wall time of the epoch, worker start-up included; the fastest
run), CPU time of the process tree (main process and workers) and bytes on disk. The bbarc epochs go through
``bbarc.data.ShuffledArchive``; every item and label they yield is checked against the source, and every run
(same seed, same epoch) must yield the same order. The others are map-style datasets under DataLoader's
shuffling sampler. Writes loader.txt and loader.json under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

import bbarc
from bbarc import bench
from bbarc.data import ShuffledArchive
from bbarc.formats.idx import read_idx

ROOT = Path(__file__).resolve().parents[1]


class NpyDataset:
    """Items from a memory-mapped .npy, labels from an array (opened per process: a worker maps it itself)."""

    def __init__(self, path: Path, labels: np.ndarray):
        self.path, self.labels, self._x = path, labels, None

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        if self._x is None:
            self._x = np.load(self.path, mmap_mode="r")
        return np.array(self._x[i]), self.labels[i]


class PngDataset:
    """One PNG file per item (``{i:05d}.png``), decoded with Pillow; labels from an array."""

    def __init__(self, folder: Path, labels: np.ndarray):
        self.folder, self.labels = folder, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.folder / f"{i:05d}.png") as image:
            return np.array(image), self.labels[i]


class Hdf5Dataset:
    """Items and labels from an HDF5 file, opened once per process (h5py handles do not survive a fork)."""

    def __init__(self, path: Path, n: int):
        self.path, self.n, self._f, self._pid = path, n, None, None

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import h5py

        if self._f is None or self._pid != os.getpid():
            f = h5py.File(self.path, "r")
            self._f, self._pid = (f["images"], f["labels"]), os.getpid()
        return self._f[0][i], self._f[1][i]


def disk_bytes(path: Path) -> tuple[int, int]:
    """(bytes in the files, bytes the filesystem allocates for them) of a file or a folder."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    stats = [p.stat() for p in files]
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


def epoch(loader) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(wall seconds, CPU seconds, items, labels) of one pass over ``loader``, worker start-up included; the CPU
    time is this process's and its workers' (joined when the epoch ends)."""
    def one_pass():
        batches = [(x.numpy(), y.numpy()) for x, y in loader]
        return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])

    (xs, ys), wall, cpu = bench.measure(one_pass)
    return wall, cpu, xs, ys


def pairs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(item bytes, label) rows, sorted: equal for two sets of samples exactly when they are the same multiset."""
    rows = np.concatenate([x.reshape(len(x), -1), y.reshape(len(y), -1).astype(np.uint8)], axis=1)
    return np.sort(np.ascontiguousarray(rows).view(f"V{rows.shape[1]}").ravel())


def write_stores(x: np.ndarray, y: np.ndarray, tmp: Path) -> dict[str, Path]:
    import h5py
    from PIL import Image

    stores = {"bbarc": tmp / "mnist.bbarc", "npy": tmp / "npy", "png": tmp / "png", "hdf5": tmp / "mnist.h5"}
    result, _, cpu = bench.measure(lambda: bbarc.compress(x, stores["bbarc"], model="mnist-vae", labels=y))
    print(f"bbarc archive: {result.archive_bytes} bytes, {cpu:.1f} CPU-s", flush=True)
    stores["npy"].mkdir()
    np.save(stores["npy"] / "images.npy", x)
    np.save(stores["npy"] / "labels.npy", y)
    stores["png"].mkdir()
    for i, image in enumerate(x):
        Image.fromarray(image).save(stores["png"] / f"{i:05d}.png")
    np.save(stores["png"] / "labels.npy", y)
    with h5py.File(stores["hdf5"], "w") as f:
        f.create_dataset("images", data=x, chunks=(1, *x.shape[1:]), compression="gzip")
        f.create_dataset("labels", data=y)
    return stores


def datasets(stores: dict[str, Path], y: np.ndarray, args) -> dict:
    return {
        "bbarc": lambda: ShuffledArchive(stores["bbarc"], labels=True, seed=args.seed, batch_size=args.batch_size),
        "npy (memmap)": lambda: NpyDataset(stores["npy"] / "images.npy", y),
        "PNG files (Pillow)": lambda: PngDataset(stores["png"], y),
        "HDF5 gzip": lambda: Hdf5Dataset(stores["hdf5"], len(y)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = ROOT.parent / "shared" / "data" / "mnist"
    ap.add_argument("--data", type=Path, default=os.environ.get("BBARC_DATA") or default_data)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epoch", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="the first N images only (a quick check)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    x = read_idx(args.data / "train-images-idx3-ubyte.gz")
    y = read_idx(args.data / "train-labels-idx1-ubyte.gz")
    x, y = x[:args.limit], y[:args.limit]
    expected = pairs(x, y)
    report = dict(items=len(x), workers=args.workers, batch_size=args.batch_size, runs=args.runs, seed=args.seed,
                  epoch=args.epoch, torch=torch.__version__, python=platform.python_version(),
                  cpus=os.cpu_count(), load_average_before=os.getloadavg(), rows=[])
    with tempfile.TemporaryDirectory() as tmp:
        stores = write_stores(x, y, Path(tmp))
        for name, make in datasets(stores, y, args).items():
            walls, cpus, orders, exact = [], [], [], True
            for _ in range(args.runs):
                dataset = make()
                if isinstance(dataset, ShuffledArchive):
                    dataset.set_epoch(args.epoch)
                    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
                else:
                    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, shuffle=True,
                                        generator=torch.Generator().manual_seed(args.seed))
                wall, cpu, xs, ys = epoch(loader)
                walls.append(wall)
                cpus.append(cpu)
                exact &= len(xs) == len(x) and np.array_equal(pairs(xs, ys), expected)
                orders.append((xs, ys))
            same_order = all(np.array_equal(o[0], orders[0][0]) and np.array_equal(o[1], orders[0][1]) for o in orders)
            stored, allocated = disk_bytes(stores[name.split()[0].lower()])
            row = dict(store=name, items_per_s=round(len(x) / min(walls)), items_per_cpu_s=round(len(x) / min(cpus)),
                       wall_s=[round(w, 2) for w in walls], cpu_s=[round(c, 2) for c in cpus], bytes=stored,
                       disk_bytes=allocated, exact=bool(exact), same_order_every_run=bool(same_order))
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            if name == "bbarc" and not (exact and same_order):
                raise SystemExit("bbarc: the loader's samples differ from the source, or its order from run to run")
    report["load_average_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loader.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "loader.txt").write_text(table(report))
    print(table(report))


def table(report: dict) -> str:
    lines = [f"One shuffled epoch over MNIST's {report['items']:,} training images (with labels) through "
             f"DataLoader(num_workers={report['workers']}, batch_size={report['batch_size']}); fastest of "
             f"{report['runs']} runs; wall time includes worker start-up; CPU = main process + workers.",
             f"python {report['python']}, torch {report['torch']}, {report['cpus']} CPUs; load average before "
             f"{report['load_average_before'][0]:.2f}, after {report['load_average_after'][0]:.2f} (the machine "
             f"is shared: wall-clock figures are noisy).", "",
             f"{'store':<20} {'items/s':>9} {'items/CPU-s':>12} {'bytes':>12} {'on disk':>12}  exact  same order"]
    for r in report["rows"]:
        lines.append(f"{r['store']:<20} {r['items_per_s']:>9,} {r['items_per_cpu_s']:>12,} {r['bytes']:>12,} "
                     f"{r['disk_bytes']:>12,}  {'yes' if r['exact'] else 'NO':<5}  "
                     f"{'yes' if r['same_order_every_run'] else 'no'}")
    lines += ["", "bytes: the files' sizes; on disk: what the filesystem allocates for them (a folder of small "
              "files costs a block each). bbarc: mnist-vae, default chunk size, labels stored; HDF5: gzip, one "
              "chunk per item; npy and PNG keep their labels in a .npy beside the images (counted)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
