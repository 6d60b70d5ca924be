"""Does the one-thread cap of coding hold from a cold start? (issue 15, item 11)

    python benchmarks/thread_cap.py [--data DIR] [--runs 3] [--out benchmarks/results]

Runs a cold ``bbarc compress`` of the 10,000 MNIST test images (``DIR/t10k-images-idx3-ubyte.gz``, or set
$BBARC_DATA) as a user would, alternately as is and with ``OMP_NUM_THREADS=1`` (and MKL/OpenBLAS likewise),
``--runs`` times each, interleaved so that a change in the machine's load hits both alike. CPU time is user +
system of the command and its children (GNU time, through ``bbarc.bench.measure_command``). Prints the ratio of
the fastest runs (minimum CPU of each) and writes thread_cap.json and thread_cap.txt. The cap holds when the
ratio is at most 1.10.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bbarc import bench
from bbarc.plugins.training.data import TEST, add_data_argument

LIMIT = 1.10
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def run(source: Path, out: Path, one_thread: bool) -> dict:
    """One cold compress in a fresh process, with the thread variables unset or set to 1."""
    saved = {k: os.environ.pop(k, None) for k in ONE_THREAD}
    try:
        if one_thread:
            os.environ.update(ONE_THREAD)
        out.unlink(missing_ok=True)
        m = bench.measure_command([sys.executable, "-m", "bbarc.cli", "compress", str(source), str(out), "-q"])
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
    return dict(cpu_s=m["cpu_s"], wall_s=m["wall_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(ap)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    source = args.data / TEST
    runs: dict[str, list[dict]] = {"default": [], "OMP_NUM_THREADS=1": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for name in runs:
                runs[name].append(run(source, Path(tmp) / "t10k.bbarc", name != "default"))
                print(f"run {i + 1} {name}: {runs[name][-1]['cpu_s']:.2f} CPU-s, {runs[name][-1]['wall_s']:.2f} s",
                      flush=True)
    best = {name: min(r["cpu_s"] for r in rs) for name, rs in runs.items()}
    ratio = best["default"] / best["OMP_NUM_THREADS=1"]
    summary = (f"cold `bbarc compress` of {source.name} ({os.cpu_count()} CPUs): min CPU {best['default']:.2f} s "
               f"as is, {best['OMP_NUM_THREADS=1']:.2f} s with OMP_NUM_THREADS=1 (min of {args.runs} interleaved "
               f"runs): ratio {ratio:.3f} ({'within' if ratio <= LIMIT else 'OVER'} the {LIMIT:.2f} limit)")
    print(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "thread_cap.json").write_text(json.dumps(dict(source=str(source), cpus=os.cpu_count(), runs=runs,
                                                              min_cpu_s=best, ratio=ratio, limit=LIMIT), indent=1))
    (args.out / "thread_cap.txt").write_text(summary + "\n")


if __name__ == "__main__":
    main()
