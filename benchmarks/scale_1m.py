"""Streaming at scale: build HDF5 datasets of N 28x28 uint8 items by tiling and shifting MNIST (train + test),
then compress each with the bbarc CLI, measured by ``bbarc.bench.measure_command``: wall time, CPU time, peak RSS
of the largest process and of all processes together (RSS and PSS), and the rate. Several N show whether time is
linear in N.

    python benchmarks/scale_1m.py --data DIR --items 250000 1000000 --workers 1 2 [--model mnist-vae]
                                  [--chunk-size 256]

``--data`` (or $BBARC_DATA) is the folder holding MNIST's IDX files.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from bbarc import bench
from bbarc.formats.idx import read_idx
from bbarc.plugins.training.data import TEST, TRAIN, add_data_argument


def build(path: Path, n: int, data: Path) -> None:
    base = np.concatenate([read_idx(data / TRAIN), read_idx(data / TEST)])
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("images", shape=(n, 28, 28), dtype=np.uint8, chunks=(1000, 28, 28))
        for start in range(0, n, len(base)):
            k = start // len(base)
            shifted = np.roll(base, shift=(k % 5 - 2, (k // 5) % 5 - 2), axis=(1, 2))  # a new copy per tiling
            ds[start : min(n, start + len(base))] = shifted[: n - start]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(ap)
    ap.add_argument("--items", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", default="mnist-vae")
    ap.add_argument("--chunk-size", type=int, default=256)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.items:
            src = Path(tmp) / f"big-{n}.h5"
            build(src, n, args.data)
            print(f"built {src.name} with {n} items ({src.stat().st_size / 2**20:.0f} MiB)", flush=True)
            for w in args.workers:
                out = Path(tmp) / f"big-{n}-{w}.bbarc"
                m = bench.measure_command([sys.executable, "-m", "bbarc.cli", "compress", f"{src}:/images", str(out),
                                           "--model", args.model, "--chunk-size", str(args.chunk_size),
                                           "--workers", str(w), "--json", "-q"])
                wall = f"{int(m['wall_s'] // 60)}:{m['wall_s'] % 60:05.2f}"
                print(f"items={n} workers={w}: wall {wall}, CPU {m['cpu_s']:.1f} s "
                      f"({n / m['cpu_s']:,.0f} items per CPU-second), peak RSS largest process "
                      f"{m['largest_rss_bytes'] / 2**20:.0f} MiB, all processes {m['tree_rss_bytes'] / 2**20:.0f} MiB "
                      f"(PSS {m['tree_pss_bytes'] / 2**20:.0f} MiB), "
                      f"{out.stat().st_size * 8 / (n * 784):.4f} bits/dim", flush=True)


if __name__ == "__main__":
    main()
