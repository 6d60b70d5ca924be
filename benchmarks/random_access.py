"""Random access: time to decode one item out of a 70,000-item archive (MNIST train + test).

    python benchmarks/random_access.py --data DIR [--model mnist-vae] [--chunk-sizes 128 256] [--items 200]
                                       [--out DIR]

``--data`` (or $BBARC_DATA) is the folder holding MNIST's IDX files. Builds the 70,000 images as one .npy,
compresses it at each chunk size, then reads ``--items`` random items (seed 0) plus the first item of a few
chunks (the slowest: a chain pops its last item first) through ``bbarc.open(path, cache_chunks=0)``, so every
read decodes from scratch. Reports the per-item latency (median, 90th percentile, max), the time a fresh process
takes to open the archive and read one item (imports, weights and compiled coder included), the archive's rate,
and for reference the same data under bbarc's ``zstd`` model (random access to zstd-compressed chunks) and
whole-file xz -9e / zstd -19, all measured in this run (``bbarc.bench``).
"""
from __future__ import annotations

import argparse
import json
import lzma
import tempfile
from pathlib import Path

import numpy as np
import zstandard

import bbarc
from bbarc import bench
from bbarc.formats.idx import read_idx
from bbarc.plugins.training.data import TEST, TRAIN, add_data_argument


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(ap)
    ap.add_argument("--model", default="mnist-vae")
    ap.add_argument("--chunk-sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    x = np.concatenate([read_idx(args.data / TRAIN), read_idx(args.data / TEST)])
    report = dict(items=len(x), model=args.model, reads=args.items, rows=[])
    raw = x.tobytes()
    for name, fn in (("xz -9e (whole file)", lambda: lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)),
                     ("zstd -19 (whole file)", lambda: zstandard.ZstdCompressor(level=19).compress(raw))):
        report["rows"].append(dict(codec=name, bits_per_dim=round(8 * len(fn()) / x.size, 5)))
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
                cold = bench.fresh_process_read(path, len(x) // 2)
                times, same = bench.read_latencies(path, picks, x)
                if not same:
                    raise SystemExit(f"{path.name}: an item decoded wrong")
                row = dict(codec=f"bbarc {model}", chunk_size=chunk, bits_per_dim=round(result.bits_per_dim, 5),
                           fresh_process_read_ms=round(cold * 1e3, 1), **bench.latency_summary(times),
                           chunk_start_ms=[round(v * 1e3, 1) for v in times[-len(starts):]])
                report["rows"].append(row)
                print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"random_access-{args.model}.json").write_text(json.dumps(report, indent=1) + "\n")
    for row in report["rows"][:2]:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
