"""Labels without decoding: time ``Archive.labels`` on the 70,000 MNIST images (train + test) with their labels.

    python benchmarks/labels.py [--data DIR] [--model mnist-vae] [--out DIR]

Compresses the images with their labels (format v2 keeps them in each chunk's record, outside the chain) at the
default chunk size, then reads every label: in-process after open (fastest of 5, and the decoding it did,
which must be none), and in a fresh process (interpreter start, import and open included). Checks the labels
against the source. Writes labels.txt and labels.json under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import bbarc
from bbarc import bench
from bbarc.formats.idx import read_idx

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=os.environ.get("BBARC_DATA") or ROOT.parent / "shared/data/mnist")
    ap.add_argument("--model", default="mnist-vae")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    x = np.concatenate([read_idx(args.data / f"{s}-images-idx3-ubyte.gz") for s in ("train", "t10k")])
    y = np.concatenate([read_idx(args.data / f"{s}-labels-idx1-ubyte.gz") for s in ("train", "t10k")])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mnist70k.bbarc"
        bbarc.compress(x, path, model=args.model, labels=y)
        with bbarc.open(path) as a:
            runs = [bench.measure(lambda: a.labels) for _ in range(5)]
            labels, times = runs[0][0], [wall for _, wall, _ in runs]
            report = dict(items=len(a), chunks=a.chunk_count, model=args.model, chunk_size=a.metadata.chunk_size,
                          labels_ms=round(min(times) * 1e3, 2), exact=bool(np.array_equal(labels, y)),
                          chunks_decoded=a.stats.chunks)
        code = "import sys, bbarc; a = bbarc.open(sys.argv[1]); a.labels"
        fresh = [bench.measure(lambda: subprocess.run([sys.executable, "-c", code, str(path)], check=True))[1]
                 for _ in range(3)]
        report["fresh_process_ms"] = round(min(fresh) * 1e3, 1)
        bare = bench.measure(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))[1]
        report["bare_interpreter_ms"] = round(bare * 1e3, 1)
    if not report["exact"] or report["chunks_decoded"]:
        raise SystemExit(f"labels wrong or decoded: {report}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "labels.json").write_text(json.dumps(report, indent=1) + "\n")
    text = (f"Archive.labels on {report['items']:,} MNIST images ({report['model']}, chunk size "
            f"{report['chunk_size']}, {report['chunks']} chunks, format v2): {report['labels_ms']} ms in-process "
            f"after open (fastest of 5; {report['chunks_decoded']} chunks decoded; labels exact: "
            f"{report['exact']}); {report['fresh_process_ms']} ms wall in a fresh process (open and import "
            f"included; a bare interpreter: {report['bare_interpreter_ms']} ms). Wall-clock figures on a shared "
            f"2-core machine are noisy.\n")
    (args.out / "labels.txt").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
