"""Rate and speed of bbarc on the MNIST test set, with general-purpose compressors measured in the same run.

    python benchmarks/mnist_rates.py [--models mnist-vae mnist-vae-binary] [--chunk-sizes 10000 1000] [--out DIR]

Prints a table and writes JSON. The binarised set is the product's acceptance data:
b = (RandomState(0).random_sample(x.shape) < x / 255).astype(uint8). Times are wall-clock on this machine;
"CPU-s" columns divide items by process CPU time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import bbarc
from bbarc import bench
from bbarc.payload import seed_header
from bbarc.formats.container import ArchiveReader
from bbarc.formats.inputs import open_source

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def baseline_rows(data: np.ndarray) -> list[dict]:
    rows = []
    for name, (enc, dec) in bench.baselines(data).items():
        raw = data.tobytes()
        blob, ew, ec = timed(lambda: enc(raw))
        back, dw, dc = timed(lambda: dec(blob))
        assert back == raw
        rows.append(dict(codec=name, bits_per_dim=8 * len(blob) / data.size, compress_s=ew, decompress_s=dw,
                         compress_cpu_s=ec, decompress_cpu_s=dc))
    return rows


def bbarc_row(data: np.ndarray, model: str, chunk: int, tmp: Path) -> dict:
    path = tmp / f"{model}-{chunk}.bbarc"
    result, ew, ec = timed(lambda: bbarc.compress(data, path, model=model, chunk_size=chunk))
    with bbarc.open(path) as a:
        back, dw, dc = timed(lambda: a[:])
    identical = bool(np.array_equal(back, data))
    with bbarc.open(path) as a:
        t = time.perf_counter()
        item = a[len(a) // 2 + 7]
        get_s = time.perf_counter() - t
    assert np.array_equal(item, data[len(data) // 2 + 7])
    with ArchiveReader(path) as r:
        payload = sum(c.length for c in r.chunks)
        header_items = [c.extra.get("header_items", 0) for c in r.chunks]
    # Chain overhead of a chunk: its zstd seed header (+ 32-bit length), the 32-bit payload prefix and the
    # 64-bit final head; an upper bound, since part of the head is real information.
    seeds = [len(seed_header(data[c * chunk : (c + 1) * chunk], h, c, {})) for c, h in enumerate(header_items)]
    chain_bits = float(np.mean([8 * s + 32 + 32 + 64 for s in seeds]))
    return dict(chain_overhead_bits_per_chunk=chain_bits, header_items_total=int(sum(header_items)),codec=f"bbarc {model} chunk={chunk}", model=model, chunk_size=chunk, chunks=result.chunks,
                bits_per_dim=result.bits_per_dim, archive_bytes=result.archive_bytes, payload_bytes=payload,
                container_bytes=result.archive_bytes - payload, identical=identical, compress_s=ew,
                decompress_s=dw, compress_cpu_s=ec, decompress_cpu_s=dc, random_item_s=get_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mnist-vae", "mnist-vae-binary"])
    ap.add_argument("--chunk-sizes", nargs="+", type=int, default=[10000, 1000])
    ap.add_argument("--limit", type=int, default=None, help="first N test images only")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    with open_source(str(MNIST)) as src:
        x = src.read(0, len(src))[: args.limit]
    datasets = {"8bit": x, "binary": (np.random.RandomState(0).random_sample(x.shape) < x / 255.0).astype(np.uint8)}
    report = dict(machine=dict(cpus=os.cpu_count(), python=sys.version.split()[0], platform=platform.platform()),
                  items=len(x), results={})
    with tempfile.TemporaryDirectory() as tmp:
        for kind, data in datasets.items():
            models = [m for m in args.models if m.endswith("binary") == (kind == "binary")]
            if not models:
                continue
            rows = baseline_rows(data)
            for model in models:
                for chunk in args.chunk_sizes:
                    rows.append(bbarc_row(data, model, chunk, Path(tmp)))
            report["results"][kind] = rows
            print(f"\n{kind} MNIST test set, {len(data)} images ({data.size} dims), mean {data.mean():.6f}")
            print(f"{'codec':38s} {'bits/dim':>9s} {'enc img/s':>10s} {'dec img/s':>10s} {'enc img/CPU-s':>14s}")
            for r in rows:
                print(f"{r['codec']:38s} {r['bits_per_dim']:9.4f} {len(data) / r['compress_s']:10.0f} "
                      f"{len(data) / r['decompress_s']:10.0f} {len(data) / max(r['compress_cpu_s'], 1e-9):14.0f}")
            by_chunk = {r["chunk_size"]: r for r in rows if "chunk_size" in r}
            sizes = sorted(by_chunk)
            if len(sizes) >= 2:
                small, big = by_chunk[sizes[0]], by_chunk[sizes[-1]]
                container = (small["container_bytes"] - big["container_bytes"]) * 8 / (small["chunks"] - big["chunks"])
                chain = small["chain_overhead_bits_per_chunk"]
                print(f"per-chunk overhead at chunk size {sizes[0]}: container {container:.0f} bits (record header + "
                      f"index entry, exact) + chain {chain:.0f} bits (seed header + framing) = {container + chain:.0f}"
                      f" bits = {(container + chain) / (8 * small['archive_bytes'] / small['chunks']):.3%} of a chunk")
                report["results"][f"{kind}_per_chunk_overhead_bits"] = dict(container=container, chain=chain)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "mnist_rates.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
