"""Rate and speed of bbarc on the MNIST test set, with general-purpose compressors measured in the same run.

    python benchmarks/mnist_rates.py --data DIR [--models mnist-vae mnist-vae-binary] [--chunk-sizes 10000 1000]
                                     [--out DIR]

``--data`` (or $BBARC_DATA) is the folder holding MNIST's IDX files. Prints a table and writes JSON. The
binarised set is the product's acceptance data: b = (RandomState(0).random_sample(x.shape) < x / 255).astype(uint8).
Times are wall-clock on this machine; "CPU-s" columns divide items by CPU time (``bbarc.bench`` measures all).
The per-chunk overhead is measured, not estimated: the archive grows by it for each extra chunk between two
chunk sizes; the container's part (record header and index entry) is what is not chunk payload.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from bbarc import bench
from bbarc.formats.container import ArchiveReader
from bbarc.formats.idx import read_idx
from bbarc.plugins.training.data import TEST, add_data_argument


def bbarc_row(data: np.ndarray, model: str, chunk: int, tmp: Path) -> dict:
    path = tmp / f"{model}-{chunk}.bbarc"
    row = bench.bbarc_row(data, model, chunk, path)
    middle = len(data) // 2 + 7
    (get_s,), same = bench.read_latencies(path, [middle], data)
    with ArchiveReader(path) as r:
        chunks, payload = len(r.chunks), sum(c.length for c in r.chunks)
    archive_bytes = path.stat().st_size
    return dict(bench.as_dicts([row])[0], model=model, chunk_size=chunk, chunks=chunks, archive_bytes=archive_bytes,
                payload_bytes=payload, container_bytes=archive_bytes - payload, random_item_s=get_s,
                identical=row.identical and same)


def overhead(rows: list[dict]) -> dict | None:
    """Bits per chunk, measured between the smallest and the largest chunk size: in all, and the container's."""
    by_chunk = {r["chunk_size"]: r for r in rows if "chunk_size" in r}
    if len(by_chunk) < 2:
        return None
    small, big = by_chunk[min(by_chunk)], by_chunk[max(by_chunk)]
    extra = small["chunks"] - big["chunks"]
    total = (small["archive_bytes"] - big["archive_bytes"]) * 8 / extra
    container = (small["container_bytes"] - big["container_bytes"]) * 8 / extra
    return dict(chunk_size=small["chunk_size"], total=total, container=container, chain=total - container,
                share=total / (8 * small["archive_bytes"] / small["chunks"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(ap)
    ap.add_argument("--models", nargs="+", default=["mnist-vae", "mnist-vae-binary"])
    ap.add_argument("--chunk-sizes", nargs="+", type=int, default=[10000, 1000])
    ap.add_argument("--limit", type=int, default=None, help="first N test images only")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    x = read_idx(args.data / TEST)[: args.limit]
    datasets = {"8bit": x, "binary": (np.random.RandomState(0).random_sample(x.shape) < x / 255.0).astype(np.uint8)}
    report = dict(machine=dict(cpus=os.cpu_count(), python=sys.version.split()[0], platform=platform.platform()),
                  items=len(x), results={})
    with tempfile.TemporaryDirectory() as tmp:
        for kind, data in datasets.items():
            models = [m for m in args.models if m.endswith("binary") == (kind == "binary")]
            if not models:
                continue
            rows = bench.as_dicts(bench.baseline_rows(data))
            rows += [bbarc_row(data, model, chunk, Path(tmp)) for model in models for chunk in args.chunk_sizes]
            report["results"][kind] = rows
            print(f"\n{kind} MNIST test set, {len(data)} images ({data.size} dims), mean {data.mean():.6f}")
            print(f"{'codec':38s} {'bits/dim':>9s} {'enc img/s':>10s} {'dec img/s':>10s} {'enc img/CPU-s':>14s}")
            for r in rows:
                print(f"{r['codec']:38s} {r['bits_per_dim']:9.4f} {r['compress_items_per_s']:10.0f} "
                      f"{r['decompress_items_per_s']:10.0f} {r['compress_items_per_cpu_s']:14.0f}")
            if (o := overhead(rows)) is not None:
                print(f"per-chunk overhead at chunk size {o['chunk_size']}: {o['total']:.0f} bits = {o['share']:.3%} "
                      f"of a chunk, of which container {o['container']:.0f} bits (record header + index entry) and "
                      f"chain {o['chain']:.0f} bits (seed header, framing, the first items' rate)")
                report["results"][f"{kind}_per_chunk_overhead_bits"] = o
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "mnist_rates.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
