"""Coding speed and rate of the MNIST VAEs against general-purpose compressors (issue 4's acceptance figures).

    python benchmarks/speed.py --data DIR [--chunk-size 256] [--limit N] [--out benchmarks/results]

``DIR`` holds MNIST's IDX files (or set $BBARC_DATA). For each of mnist-vae (8-bit test set) and
mnist-vae-binary (stochastically binarised test set, seed 0, as in benchmarks/mnist_rates.py) this runs
``bbarc bench`` (bbarc, gzip, bzip2, xz, zstd and PNG in the same run, one process), then compares the chunked
rate with one chain over the whole set. Prints a summary, writes speed-<model>.json and a rate-vs-speed plot
per model.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import bbarc
from bbarc import bench
from bbarc.formats.idx import read_idx
from bbarc.plugins.training.data import TEST, add_data_argument

TARGETS = {"mnist-vae": (5000, None), "mnist-vae-binary": (15000, 0.196)}  # items per CPU-second, bits/dim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(ap)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--models", nargs="+", default=list(TARGETS))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    x = read_idx(args.data / TEST)[: args.limit]
    data = {"mnist-vae": x, "mnist-vae-binary": (np.random.RandomState(0).random_sample(x.shape) < x / 255.0)
            .astype(np.uint8)}
    args.out.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "items.npy"
            np.save(source, data[model])
            rows = bench.bench(source, model, args.chunk_size)
            single = bbarc.compress(source, Path(tmp) / "one.bbarc", model=model, chunk_size=len(x)).bits_per_dim
        ours = rows[-1]
        ratio = bench.speed_ratio(rows)
        report = dict(model=model, items=len(x), chunk_size=args.chunk_size, rows=bench.as_dicts(rows),
                      compress_speed_vs_xz_9e=ratio, single_chain_bits_per_dim=single,
                      chunked_over_single_chain=ours.bits_per_dim / single - 1)
        (args.out / f"speed-{model}.json").write_text(json.dumps(report, indent=1) + "\n")
        bench.plot(rows, args.out / f"speed-{model}.png", f"MNIST test set, {model}, chunk {args.chunk_size}")
        speed, rate = TARGETS[model]
        print(f"{model} (chunk {args.chunk_size}, {len(x)} items): {ours.bits_per_dim:.5f} bits/dim "
              f"(one chain {single:.5f}, +{100 * (ours.bits_per_dim / single - 1):.2f} %), "
              f"compress {ours.compress_items_per_cpu_s:,.0f} / decompress {ours.decompress_items_per_cpu_s:,.0f} "
              f"items per CPU-second (target {speed:,}{f' at <= {rate}' if rate else ''}); "
              f"{ratio:.1f}x xz -9e's compression speed; start-up {ours.startup_s:.2f} s; identical {ours.identical}")
        for r in rows:
            print(f"    {r.codec:28s} {r.bits_per_dim:7.4f} bits/dim  compress {r.compress_items_per_cpu_s:9,.0f}"
                  f"  decompress {r.decompress_items_per_cpu_s:9,.0f} items/CPU-s")


if __name__ == "__main__":
    main()
