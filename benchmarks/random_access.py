"""Random access: time to decode one item out of a 70,000-item archive (MNIST train + test).

    python benchmarks/random_access.py [--model mnist-vae] [--chunk-sizes 128 256] [--items 200] [--out DIR]

Builds the 70,000 images as one .npy, compresses it at each chunk size, then reads ``--items`` random items
(seed 0) plus the first item of a few chunks (the slowest: a chain pops its last item first) through
``bbarc.open(path, cache_chunks=0)``, so every read decodes from scratch. Reports the per-item latency
(median, 90th percentile, max), the time a fresh process takes to open the archive and read one item (imports,
weights and compiled coder included), the archive's rate, and for reference the same data under bbarc's ``zstd`` model
(random access to zstd-compressed chunks) and whole-file xz -9e / zstd -19, all measured in this run.
"""
from __future__ import annotations

import argparse
import json
import lzma
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

import bbarc
from bbarc.formats.inputs import open_source

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
COLD = """
import sys, time
t = time.perf_counter()
import bbarc
with bbarc.open(sys.argv[1]) as a:
    a[int(sys.argv[2])]
print(time.perf_counter() - t)
"""


def latencies(path: Path, items: np.ndarray, picks: list[int]) -> list[float]:
    out = []
    with bbarc.open(path, cache_chunks=0) as a:
        a[len(a) - 1]  # loads the model and the compiled coder once (start-up, reported apart)
        for i in picks:
            t = time.perf_counter()
            item = a[i]
            out.append(time.perf_counter() - t)
            if not np.array_equal(item, items[i]):
                raise SystemExit(f"item {i} decoded wrong")
    return out


def summary(ms: list[float]) -> dict:
    arr = np.array(ms) * 1e3
    return dict(median_ms=round(float(np.median(arr)), 2), p90_ms=round(float(np.percentile(arr, 90)), 2),
                max_ms=round(float(arr.max()), 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnist-vae")
    ap.add_argument("--chunk-sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    x = np.concatenate([open_source(MNIST / "train-images-idx3-ubyte.gz").read(0, 60000),
                        open_source(MNIST / "t10k-images-idx3-ubyte.gz").read(0, 10000)])
    dims = x.size
    report = dict(items=len(x), model=args.model, reads=args.items, rows=[])
    raw = x.tobytes()
    for name, fn in (("xz -9e (whole file)", lambda: lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)),
                     ("zstd -19 (whole file)", lambda: zstandard.ZstdCompressor(level=19).compress(raw))):
        report["rows"].append(dict(codec=name, bits_per_dim=round(8 * len(fn()) / dims, 5)))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "mnist70k.npy"
        np.save(source, x)
        for model in (args.model, "zstd"):
            for chunk in args.chunk_sizes:
                path = Path(tmp) / f"{model}-{chunk}.bbarc"
                result = bbarc.compress(source, path, model=model, chunk_size=chunk)
                rng = np.random.default_rng(0)
                starts = [chunk * k for k in (0, 100, 273 * 256 // chunk)]
                picks = [int(i) for i in rng.integers(0, len(x), args.items)] + starts
                cold = float(subprocess.run(  # a fresh process: imports, weights and compiled coder included
                    [sys.executable, "-c", COLD, str(path), str(len(x) // 2)], check=True, capture_output=True,
                    text=True).stdout)
                times = latencies(path, x, picks)
                row = dict(codec=f"bbarc {model}", chunk_size=chunk, bits_per_dim=round(result.bits_per_dim, 5),
                           fresh_process_read_ms=round(cold * 1e3, 1), **summary(times),
                           chunk_start_ms=[round(v * 1e3, 1) for v in times[-len(starts):]])
                report["rows"].append(row)
                print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"random_access-{args.model}.json").write_text(json.dumps(report, indent=1) + "\n")
    for row in report["rows"][:2]:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
