"""bbarc as its users run it: the command line on MNIST's 70,000 images, start-up included, next to xz and zstd.

    python benchmarks/cli_speed.py --data DIR [--runs 3] [--baseline-runs N] [--models mnist-vae mnist-vae-binary]
                                   [--limit N] [--skip-coding] [--skip-startup] [--out DIR]

(a) Coding. The 70,000 MNIST images (train then test) for ``mnist-vae``, and their stochastic binarisation as
benchmarks/mnist_rates.py makes it (RandomState(0) over the 70,000) for ``mnist-vae-binary``, are saved as .npy
files and coded by ``bbarc compress`` and ``bbarc decompress`` at the default chunk size, each a fresh process:
images per CPU-second of the whole process tree (start-up included, the minimum over ``--runs``), the round trip
checked, bits/dim of the archive file. ``xz -9e`` and ``zstd -19`` (the command-line tools, one thread) code the
same .npy files in the same run.
(b) Cold start. ``python -c "import numpy, zstandard, h5py"`` as the baseline, then ``bbarc info``, ``bbarc get
A 1234 -o x.npy`` on a 10,000-item archive (the MNIST test set, mnist-vae), ``bbarc models`` and ``bbarc --help``,
each a fresh process, ``--runs`` rounds interleaved: the minimum wall time of each, as a ratio to the baseline's.
One untimed ``get`` comes first, so that numba's cache is filled: a first command after install compiles (and
says so), which this does not measure.

The machine is shared: wall-clock figures are noisy, CPU figures less so. Environment variables pass through to
the commands (``BBARC_LOAD_PLUGINS`` is recorded), but for ``PYTHONDONTWRITEBYTECODE``, which is dropped: a user's
bbarc runs from bytecode (``pip install`` compiles it; an editable install writes it on the first run, the untimed
one here), as the baseline's numpy and h5py do; with it set, every command would compile bbarc from source. Results: ``--out``/cli_speed.txt and cli_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bbarc import bench
from bbarc.plugins.training.data import TEST, TRAIN, add_data_argument, load_images

TARGETS = {  # issue 12: images per CPU-second both ways, and the rate not to lose (default chunk size)
    "mnist-vae": dict(images_per_cpu_s=5000, bits_per_dim=1.3501),
    "mnist-vae-binary": dict(images_per_cpu_s=15000, bits_per_dim=0.1800),
}
COLD_TARGETS = {"info": 2.0, "get": 4.0}  # wall time over the baseline's
BASELINES = {  # name: (compress, decompress, suffix); the file name goes last, output on stdout
    "xz -9e": (["xz", "-9e", "-T1", "-c"], ["xz", "-d", "-c"], "xz"),
    "zstd -19": (["zstd", "-19", "-T1", "-q", "-c"], ["zstd", "-d", "-q", "-c"], "zst"),
}


def bbarc_command() -> list[str]:
    """The ``bbarc`` script installed next to this Python, as a user types it (else ``python -m bbarc.cli``)."""
    script = Path(sys.executable).with_name("bbarc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bbarc.cli"]


def datasets(data: Path, limit: int | None) -> dict[str, np.ndarray]:
    x = np.concatenate([load_images(data, TRAIN), load_images(data, TEST)]).reshape(-1, 28, 28)
    binary = (np.random.RandomState(0).random_sample(x.shape) < x / 255.0).astype(np.uint8)
    return {"mnist-vae": x[:limit], "mnist-vae-binary": binary[:limit]}


def row(codec: str, n: int, dims: int, size: int, comp: list, decomp: list, identical: bool) -> dict:
    """One codec's figures: the minimum CPU and wall time over the runs, each direction."""
    cpu_c, cpu_d = min(c for _, c in comp), min(c for _, c in decomp)
    return dict(codec=codec, bits_per_dim=8 * size / dims, bytes=size,
                compress_images_per_cpu_s=n / cpu_c, decompress_images_per_cpu_s=n / cpu_d,
                compress_cpu_s=cpu_c, decompress_cpu_s=cpu_d, compress_wall_s=min(w for w, _ in comp),
                decompress_wall_s=min(w for w, _ in decomp), runs=len(comp), identical=identical)


def coding(bbarc: list[str], model: str, data: np.ndarray, tmp: Path, runs: int, baseline_runs: int) -> list[dict]:
    src, archive, out = tmp / f"{model}.npy", tmp / f"{model}.bbarc", tmp / f"{model}.out.npy"
    np.save(src, data)
    comp, decomp, identical = [], [], True
    for _ in range(runs):
        comp.append(bench.run_command([*bbarc, "compress", src, archive, "-m", model, "-q", "-f"]))
        decomp.append(bench.run_command([*bbarc, "decompress", archive, out, "-q", "-f"]))
        identical = identical and np.array_equal(np.load(out, mmap_mode="r"), data)
    rows = [row(f"bbarc {model}", len(data), data.size, archive.stat().st_size, comp, decomp, identical)]
    raw = src.read_bytes()
    for name, (enc, dec, suffix) in BASELINES.items() if baseline_runs else ():
        packed, back = tmp / f"{model}.npy.{suffix}", tmp / f"{model}.back.npy"
        comp, decomp = [], []
        for _ in range(baseline_runs):
            with open(packed, "wb") as f:
                comp.append(bench.run_command([*enc, src], stdout=f))
            with open(back, "wb") as f:
                decomp.append(bench.run_command([*dec, packed], stdout=f))
        rows.append(row(name, len(data), data.size, packed.stat().st_size, comp, decomp, back.read_bytes() == raw))
    return rows


def cold_start(bbarc: list[str], test: np.ndarray, tmp: Path, runs: int) -> dict:
    src, archive, item = tmp / "test.npy", tmp / "test.bbarc", tmp / "x.npy"
    np.save(src, test)
    bench.run_command([*bbarc, "compress", src, archive, "-m", "mnist-vae", "-q", "-f"])
    pick = min(1234, len(test) - 1)
    commands = {
        "baseline": [sys.executable, "-c", "import numpy, zstandard, h5py"],
        "info": [*bbarc, "info", archive],
        "get": [*bbarc, "get", archive, str(pick), "-o", item, "-f"],
        "models": [*bbarc, "models"],
        "--help": [*bbarc, "--help"],
    }
    bench.run_command(commands["get"])  # fills numba's cache (a first command after install compiles)
    times = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            times[name].append(bench.run_command(cmd))
    base = min(w for w, _ in times["baseline"])
    result = {name: dict(wall_s=min(w for w, _ in t), cpu_s=min(c for _, c in t),
                         ratio=min(w for w, _ in t) / base) for name, t in times.items()}
    return dict(items=len(test), item=pick, identical=bool(np.array_equal(np.load(item), test[pick])),
                runs=runs, commands=result, get_imports=import_breakdown(commands["get"]))


def import_breakdown(cmd: list[str], top: int = 12) -> list[tuple[str, float]]:
    """The top-level imports of ``cmd`` by cumulative import time (``python -X importtime``, through its
    environment variable): where a cold command's start-up goes."""
    run = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPROFILEIMPORTTIME="1"))
    found = []
    for line in run.stderr.splitlines():
        cells = line.split("|")
        if line.startswith("import time:") and len(cells) == 3 and cells[1].strip().isdigit():
            name = cells[2].rstrip()
            if len(name) - len(name.lstrip()) <= 3:  # imported by the command itself, not by another module
                found.append((name.strip(), int(cells[1]) / 1e6))
    return sorted(found, key=lambda t: -t[1])[:top]


def report_lines(report: dict) -> list[str]:
    lines = [f"bbarc command line, start-up included ({report['machine']}); wall-clock figures are noisy on a shared "
             "machine, CPU figures less so"]
    for model, rows in report.get("coding", {}).items():
        target = TARGETS[model]
        lines.append(f"\n{model}: {rows[0]['runs']} runs (baselines {rows[-1]['runs'] if len(rows) > 1 else 0}), "
                     f"{report['items'][model]} images; target >= {target['images_per_cpu_s']:,} images/CPU-s "
                     f"both ways at <= {target['bits_per_dim']} bits/dim")
        for r in rows:
            lines.append(f"    {r['codec']:24s} {r['bits_per_dim']:.4f} bits/dim  compress "
                         f"{r['compress_images_per_cpu_s']:>9,.0f}  decompress {r['decompress_images_per_cpu_s']:>11,.0f} "
                         f"images/CPU-s  (CPU {r['compress_cpu_s']:.2f} s / {r['decompress_cpu_s']:.2f} s, wall "
                         f"{r['compress_wall_s']:.2f} s / {r['decompress_wall_s']:.2f} s)  identical {r['identical']}")
        ours = rows[0]
        slower = min(ours["compress_images_per_cpu_s"], ours["decompress_images_per_cpu_s"])
        met = slower >= target["images_per_cpu_s"] and ours["bits_per_dim"] <= target["bits_per_dim"]
        lines.append(f"    target {'met' if met else 'NOT met'}")
    cold = report.get("cold_start")
    if cold:
        lines.append(f"\ncold start, min of {cold['runs']} interleaved runs, archive of {cold['items']} items "
                     f"(mnist-vae, default chunk), get item {cold['item']} (identical {cold['identical']}):")
        for name, c in cold["commands"].items():
            target = COLD_TARGETS.get(name)
            verdict = f"  target <= {target:.0f}x: {'met' if c['ratio'] <= target else 'NOT met'}" if target else ""
            lines.append(f"    {name:9s} wall {c['wall_s']:.3f} s = {c['ratio']:.2f}x baseline  CPU {c['cpu_s']:.3f} s"
                         f"{verdict}")
        lines.append("    get, top-level imports (python -X importtime, cumulative s): "
                     + ", ".join(f"{name} {s:.3f}" for name, s in cold["get_imports"]))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(ap)
    ap.add_argument("--runs", type=int, default=3, help="runs of each command; the minimum counts")
    ap.add_argument("--baseline-runs", type=int, default=None, help="runs of xz and zstd (default: --runs; 0: none)")
    ap.add_argument("--models", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--limit", type=int, default=None, help="first N images only (a quick check)")
    ap.add_argument("--skip-coding", action="store_true")
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument("--bbarc", help="the command to run as bbarc, e.g. another install's (default: the bbarc "
                                    "script beside this Python)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    dropped = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # see the module docstring
    data = datasets(args.data, args.limit)
    bbarc = args.bbarc.split() if args.bbarc else bbarc_command()
    report = dict(bbarc=bbarc, machine=f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {platform.platform()}",
                  load_average=os.getloadavg(), bbarc_load_plugins=os.environ.get("BBARC_LOAD_PLUGINS"),
                  dropped_pythondontwritebytecode=dropped is not None,
                  items={m: len(data[m]) for m in args.models})
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_coding:
            baseline_runs = args.runs if args.baseline_runs is None else args.baseline_runs
            report["coding"] = {m: coding(bbarc, m, data[m], Path(tmp), args.runs, baseline_runs)
                                for m in args.models}
        if not args.skip_startup:
            test = load_images(args.data, TEST).reshape(-1, 28, 28)[: args.limit or 10_000]
            report["cold_start"] = cold_start(bbarc, test, Path(tmp), args.runs)
    lines = report_lines(report)
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli_speed.txt").write_text("\n".join(lines) + "\n")
    (args.out / "cli_speed.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
