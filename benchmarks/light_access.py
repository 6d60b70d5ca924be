"""Decoding a few items in a fresh process: the light path (numpy/Python kernels, float32 int8 products; no numba,
no torch) against the compiled kernels, in-process and through a cold ``bbarc get``.

    python benchmarks/light_access.py ARCHIVE [--item 1234] [--items 30] [--runs 3] [--out results.json]

Each measurement runs in its own fresh Python process. In-process figures are the CPU seconds (``bbarc.bench``) of
opening the archive and loading its model (which both paths pay), and of ``a[i]`` alone: with the exact tables
built before it (``warm``, as when they are pinned) or on first use within it (``cold``). The cold command
is timed from outside (``bench.measure_command``): wall seconds and CPU of the whole process, next to the baseline
``python -c "import numpy, zstandard, h5py"`` in the same run. Minimum of ``--runs`` runs; the median over
``--items`` random items (seed 0) for the per-item figures.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

from bbarc.bench import measure_command

PROBE = """
import sys
from bbarc import api, fixedpoint as fp
from bbarc.bench import measure

def load():
    a = api.open(sys.argv[1], cache_chunks=0)
    a.model()
    if sys.argv[3] == "warm":  # the exact tables built before the item (as when they are pinned, not rebuilt)
        fp.sigmoid_table(), fp.inverse_scale_table(), fp.weight_table(), fp.logistic_bin_edges(12)
        fp.logistic_bin_centres(12)
    return a

a, _, open_cpu = measure(load)
_, item_wall, item_cpu = measure(lambda: a[int(sys.argv[2])])
print(open_cpu, item_cpu, item_wall, int('numba' in sys.modules), int('torch' in sys.modules))
"""


def probe(path: str, item: int, kernels: str, tables: str = "warm") -> dict:
    env = dict(os.environ, BBARC_KERNELS=kernels)
    out = subprocess.run([sys.executable, "-c", PROBE, path, str(item), tables], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return dict(open_cpu=float(out[0]), item_cpu=float(out[1]), item_wall=float(out[2]), numba=bool(int(out[3])),
                torch=bool(int(out[4])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archive")
    ap.add_argument("--item", type=int, default=1234)
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    import bbarc

    with bbarc.open(args.archive) as a:
        n = len(a)
    result: dict = dict(archive=args.archive, item=args.item)
    for kernels, tables in (("auto", "warm"), ("compiled", "warm"), ("auto", "cold")):
        runs = [probe(args.archive, args.item, kernels, tables) for _ in range(args.runs)]
        result[f"{kernels}-tables-{tables}"] = dict(
            item_cpu=min(r["item_cpu"] for r in runs), open_cpu=min(r["open_cpu"] for r in runs),
            item_wall=min(r["item_wall"] for r in runs), numba=runs[0]["numba"], torch=runs[0]["torch"])
        print(kernels, tables, result[f"{kernels}-tables-{tables}"], flush=True)
    bbarc_cli = os.path.join(os.path.dirname(sys.executable), "bbarc")
    out = os.path.join(os.path.dirname(os.path.abspath(args.out or ".")), "light_access_item.npy")
    base, get = [], []
    for _ in range(args.runs):
        base.append(measure_command([sys.executable, "-c", "import numpy, zstandard, h5py"]))
        get.append(measure_command([bbarc_cli, "get", args.archive, str(args.item), "-o", out, "-f"]))
    os.remove(out)
    result["cold"] = dict(baseline_wall=min(r["wall_s"] for r in base), baseline_cpu=min(r["cpu_s"] for r in base),
                          get_wall=min(r["wall_s"] for r in get), get_cpu=min(r["cpu_s"] for r in get))
    result["cold"]["ratio_wall"] = result["cold"]["get_wall"] / result["cold"]["baseline_wall"]
    print("cold", result["cold"], flush=True)
    items = np.random.default_rng(0).choice(n, args.items, replace=False).tolist()
    per = [probe(args.archive, i, "auto") for i in items]
    result["random"] = dict(items=items, median_item_cpu=statistics.median(r["item_cpu"] for r in per),
                            median_item_wall=statistics.median(r["item_wall"] for r in per),
                            max_item_cpu=max(r["item_cpu"] for r in per),
                            loaded_numba=sum(r["numba"] for r in per), loaded_torch=sum(r["torch"] for r in per))
    print("random", {k: v for k, v in result["random"].items() if k != "items"}, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
