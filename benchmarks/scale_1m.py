"""Streaming at scale: build HDF5 datasets of N 28x28 uint8 items by tiling and shifting MNIST (train + test),
then compress each with the bbarc CLI under /usr/bin/time: wall time, CPU time, peak RSS of the largest process
and of all processes together (RSS and PSS, sampled every 0.1 s), and the rate. Several N show whether time is linear in N.

    python benchmarks/scale_1m.py --items 250000 1000000 --workers 1 2 [--model mnist-vae] [--chunk-size 256]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from bbarc.formats.inputs import open_source

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
    ap.add_argument("--items", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", default="mnist-vae")
    ap.add_argument("--chunk-size", type=int, default=256)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.items:
            src = Path(tmp) / f"big-{n}.h5"
            build(src, n)
            print(f"built {src.name} with {n} items ({src.stat().st_size / 2**20:.0f} MiB)", flush=True)
            for w in args.workers:
                out = Path(tmp) / f"big-{n}-{w}.bbarc"
                cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "bbarc.cli", "compress", f"{src}:/images",
                       str(out), "--model", args.model, "--chunk-size", str(args.chunk_size), "--workers", str(w),
                       "--json", "-q"]
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                total, pss = peak_tree_rss(proc)
                stdout, stderr = proc.communicate()
                if proc.returncode:
                    raise SystemExit(f"compress failed: {stderr}")
                wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", stderr).group(1)
                rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))
                cpu = sum(float(re.search(rf"{k} time \(seconds\): (\S+)", stderr).group(1)) for k in ("User", "System"))
                print(f"items={n} workers={w}: wall {wall}, CPU {cpu:.1f} s ({n / cpu:,.0f} items per CPU-second), "
                      f"peak RSS largest process {rss / 1024:.0f} MiB, all processes {total / 2**20:.0f} MiB "
                      f"(PSS {pss / 2**20:.0f} MiB), "
                      f"{out.stat().st_size * 8 / (n * 784):.4f} bits/dim", flush=True)


def peak_tree_rss(proc: subprocess.Popen) -> tuple[int, int]:
    """Largest sums of RSS and of PSS (shared pages such as library code counted once, split between the
    processes that map them) over the process and all its descendants, sampled until it exits (bytes)."""
    import psutil

    root, peak_rss, peak_pss = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        try:
            procs = [p for p in (root, *root.children(recursive=True)) if p.is_running()]
            peak_rss = max(peak_rss, sum(p.memory_info().rss for p in procs))
            peak_pss = max(peak_pss, sum(_pss(p.pid) for p in procs))
        except (psutil.Error, OSError):
            pass
        time.sleep(0.1)
    return peak_rss, peak_pss


def _pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return int(f.read().split("Pss:")[1].split()[0]) * 1024


if __name__ == "__main__":
    main()
