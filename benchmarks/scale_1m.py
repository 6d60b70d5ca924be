"""Streaming at scale: build an HDF5 dataset of N 28x28 uint8 items by tiling and shifting MNIST (train + test),
then compress it with bbarc under /usr/bin/time to report wall time and peak RSS.

    python benchmarks/scale_1m.py --items 1000000 --workers 1 2 [--model mnist-vae] [--chunk-size 1000]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from formats.inputs import open_source

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def build(path: Path, n: int) -> None:
    base = np.concatenate([open_source(str(MNIST / f)).read(0, k) for f, k in
                           (("train-images-idx3-ubyte.gz", 60000), ("t10k-images-idx3-ubyte.gz", 10000))])
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("images", shape=(n, 28, 28), dtype=np.uint8, chunks=(1000, 28, 28))
        for start in range(0, n, len(base)):
            k = start // len(base)
            shifted = np.roll(base, shift=(k % 5 - 2, (k // 5) % 5 - 2), axis=(1, 2))  # a new copy per tiling
            ds[start : min(n, start + len(base))] = shifted[: n - start]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", default="mnist-vae")
    ap.add_argument("--chunk-size", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.h5"
        build(src, args.items)
        print(f"built {src} with {args.items} items ({src.stat().st_size / 2**20:.0f} MiB)", flush=True)
        for w in args.workers:
            out = Path(tmp) / f"big-{w}.bbarc"
            run = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "archiver.cli", "compress",
                                  f"{src}:/images", str(out), "--model", args.model, "--chunk-size",
                                  str(args.chunk_size), "--workers", str(w), "--json", "-q"],
                                 capture_output=True, text=True, check=True)
            wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", run.stderr).group(1)
            rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
            print(f"workers={w}: wall {wall}, peak RSS (largest process) {rss / 1024:.0f} MiB, "
                  f"{out.stat().st_size * 8 / (args.items * 784):.4f} bits/dim", flush=True)


if __name__ == "__main__":
    main()
