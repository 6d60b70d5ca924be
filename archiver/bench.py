"""The one home of bbarc's measuring: ``bbarc bench`` calls ``bench``, and the scripts in ``benchmarks/`` build
their data sets and call the functions below, so every figure in ``benchmarks/results/`` is measured one way.

``bench`` reports bits/dim and items/s (wall clock and per CPU-second of this process and its workers) for
compression and decompression, bbarc next to general-purpose compressors on the same data in the same run.
bbarc's one-time start-up (reading the model's weights, loading the compiled coder) is measured apart, as
``startup_s``, so the speeds are those of a running coder.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import zstandard

from bbarc.errors import UsageError
from bbarc.formats.inputs import open_source

from . import api, pipeline


@dataclass(frozen=True)
class BenchRow:
    codec: str
    bits_per_dim: float
    compress_items_per_s: float
    decompress_items_per_s: float
    compress_items_per_cpu_s: float
    decompress_items_per_cpu_s: float
    identical: bool
    startup_s: float = 0.0


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, once they have exited
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn):
    """``(fn(), wall seconds, CPU seconds of this process and its finished children)``."""
    wall, cpu = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - wall, _cpu() - cpu


def _optional(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise UsageError(f"`bbarc bench` needs {module.split('.')[0]}: pip install 'bbarc[bench]'") from None


def load_items(source, dataset: str | None = None, limit: int | None = None) -> np.ndarray:
    """The first ``limit`` (default: all) items of a dataset, in memory."""
    with open_source(source, dataset) as src:
        n = min(len(src), limit) if limit else len(src)
        if n == 0:
            raise UsageError(f"{src.description} holds no items to benchmark")
        return src.read(0, n)


def _png(items: np.ndarray) -> tuple:
    """One PNG file per item (Pillow, optimize=True), each behind a u32 length that counts towards the size."""
    Image = _optional("PIL.Image")

    def enc(raw: bytes) -> bytes:
        parts = []
        for img in np.frombuffer(raw, np.uint8).reshape(items.shape):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG", optimize=True)
            parts += [len(buf.getvalue()).to_bytes(4, "little"), buf.getvalue()]
        return b"".join(parts)

    def dec(blob: bytes) -> bytes:
        frames, pos = [], 0
        while pos < len(blob):
            size = int.from_bytes(blob[pos : pos + 4], "little")
            with Image.open(io.BytesIO(blob[pos + 4 : pos + 4 + size])) as img:
                frames.append(np.asarray(img))
            pos += 4 + size
        return np.stack(frames).tobytes()

    return enc, dec


def baselines(items: np.ndarray) -> dict:
    coders = {
        "gzip -9": (lambda b: gzip.compress(b, 9), gzip.decompress),
        "bzip2 -9": (lambda b: bz2.compress(b, 9), bz2.decompress),
        "xz -6": (lambda b: lzma.compress(b, preset=6), lzma.decompress),
        "xz -9e": (lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    }
    for level in (3, 9, 19, 22):
        coders[f"zstd -{level}"] = (zstandard.ZstdCompressor(level=level).compress,
                                    zstandard.ZstdDecompressor().decompress)
    if items.dtype == np.uint8 and items.ndim in (3, 4):
        coders["PNG (per image, optimize)"] = _png(items)
    return coders


def baseline_rows(items: np.ndarray, progress=None) -> list[BenchRow]:
    """Each general-purpose compressor on the items' raw bytes: compressed, decompressed and compared."""
    raw, rows = items.tobytes(), []
    for name, (enc, dec) in baselines(items).items():
        blob, cw, cc = measure(lambda: enc(raw))
        back, dw, dc = measure(lambda: dec(blob))
        rows.append(_row(name, 8 * len(blob) / items.size, len(items), cw, dw, cc, dc, back == raw))
        if progress:
            progress(name)
    return rows


def bbarc_row(items: np.ndarray, model, chunk_size: int, path, workers: int = 1) -> BenchRow:
    """bbarc compressing ``items`` to ``path`` (left there for the caller) and decompressing them again; start-up
    (a two-item round trip first) is measured apart."""
    path = Path(path)
    _, startup, _ = measure(lambda: _round_trip(items[:2], path.with_suffix(".warm.bbarc"), model, 2))
    result, cw, cc = measure(lambda: pipeline.compress(items, path, model=model, chunk_size=chunk_size,
                                                       workers=workers))
    out = path.with_suffix(".out.npy")
    _, dw, dc = measure(lambda: api.decompress(path, out, workers=workers))
    same = np.array_equal(np.load(out), items)
    out.unlink()
    name = f"bbarc {getattr(model, 'id', model)} (chunk {chunk_size})"
    return replace(_row(name, result.bits_per_dim, len(items), cw, dw, cc, dc, same), startup_s=startup)


def _round_trip(items: np.ndarray, path: Path, model, chunk_size: int) -> None:
    pipeline.compress(items, path, model=model, chunk_size=chunk_size)
    api.decompress(path, path.with_suffix(".npy"))
    path.unlink()
    path.with_suffix(".npy").unlink()


def bench(source, model, chunk_size: int = pipeline.DEFAULT_CHUNK, dataset: str | None = None,
          limit: int | None = None, workers: int = 1, progress=None) -> list[BenchRow]:
    """``bbarc bench``: the baselines, then bbarc with ``model`` (an id or a Model), on the same items."""
    items = load_items(source, dataset, limit)
    rows = baseline_rows(items, progress)
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(bbarc_row(items, model, chunk_size, Path(tmp) / "bench.bbarc", workers))
    return rows


def speed_ratio(rows: list[BenchRow], baseline: str = "xz -9e") -> float | None:
    """bbarc's compression speed per CPU-second over ``baseline``'s, both measured in this run."""
    ours = [r for r in rows if r.codec.startswith("bbarc")]
    theirs = [r for r in rows if r.codec == baseline]
    if not ours or not theirs:
        return None
    return ours[0].compress_items_per_cpu_s / theirs[0].compress_items_per_cpu_s


def _row(name, bpd, n, cw, dw, cc, dc, identical) -> BenchRow:
    per = lambda t: n / t if t > 0 else float("inf")  # noqa: E731
    return BenchRow(name, bpd, per(cw), per(dw), per(cc), per(dc), bool(identical))


# -- random access ------------------------------------------------------------------------------------------

_FRESH_READ = """
import sys, time
t = time.perf_counter()
import bbarc
with bbarc.open(sys.argv[1]) as a:
    a[int(sys.argv[2])]
print(time.perf_counter() - t)
"""


def read_latencies(path, picks: list[int], expected: np.ndarray | None = None) -> tuple[list[float], bool]:
    """Seconds to read each item in ``picks`` through ``bbarc.open(path, cache_chunks=0)`` (every read decodes
    from scratch), and whether every item equals ``expected[i]``. The last item is read first, untimed: loading
    the model and the compiled coder is start-up (``fresh_process_read``), not latency."""
    seconds, same = [], True
    with api.open(path, cache_chunks=0) as archive:
        archive[len(archive) - 1]
        for i in picks:
            item, wall, _ = measure(lambda: archive[i])
            seconds.append(wall)
            same = same and (expected is None or bool(np.array_equal(item, expected[i])))
    return seconds, same


def fresh_process_read(path, index: int) -> float:
    """Seconds a new Python process takes to import bbarc, open the archive and read one item."""
    proc = subprocess.run([sys.executable, "-c", _FRESH_READ, str(path), str(index)], check=True,
                          capture_output=True, text=True)
    return float(proc.stdout)


def latency_summary(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1e3
    return dict(median_ms=round(float(np.median(ms)), 2), p90_ms=round(float(np.percentile(ms, 90)), 2),
                max_ms=round(float(ms.max()), 2))


# -- a whole command: time, CPU and memory -----------------------------------------------------------------

def run_command(cmd: list[str], stdout=None, env: dict | None = None) -> tuple[float, float]:
    """Run ``cmd`` to its end as a user would (a fresh process, start-up included): (wall seconds, CPU seconds
    of its whole process tree, user + system, from RUSAGE_CHILDREN: every descendant that was waited for).
    ``stdout``: a file to write the output to (default: discarded). Raises UsageError if the command fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    proc = subprocess.run(cmd, stdout=stdout if stdout is not None else subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=env)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise UsageError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def measure_command(cmd: list[str], interval: float = 0.1) -> dict:
    """Run ``cmd`` under GNU time (``/usr/bin/time -v``): wall seconds, and from GNU time the CPU seconds and the
    largest process's peak RSS; plus the peak RSS and PSS summed over the process and all its descendants,
    sampled every ``interval`` seconds (psutil; PSS counts shared pages such as library code once, split between
    the processes that map them). Raises UsageError if the command fails."""
    wall = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    tree_rss, tree_pss = _peak_tree_memory(proc, interval)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - wall
    if proc.returncode:
        raise UsageError(f"{' '.join(cmd)} failed: {stderr[-2000:]}")
    field = lambda label: float(re.search(rf"{label}: (\S+)", stderr).group(1))  # noqa: E731
    cpu = field(r"User time \(seconds\)") + field(r"System time \(seconds\)")
    return dict(stdout=stdout, wall_s=wall, cpu_s=cpu,
                largest_rss_bytes=int(field(r"Maximum resident set size \(kbytes\)")) * 1024,
                tree_rss_bytes=tree_rss, tree_pss_bytes=tree_pss)


def _peak_tree_memory(proc: subprocess.Popen, interval: float) -> tuple[int, int]:
    psutil = _optional("psutil")
    root, peak_rss, peak_pss = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        try:
            procs = [p for p in (root, *root.children(recursive=True)) if p.is_running()]
            peak_rss = max(peak_rss, sum(p.memory_info().rss for p in procs))
            peak_pss = max(peak_pss, sum(_pss(p.pid) for p in procs))
        except (psutil.Error, OSError):
            pass  # a process ended between listing and reading it
        time.sleep(interval)
    return peak_rss, peak_pss


def _pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return int(f.read().split("Pss:")[1].split()[0]) * 1024


# -- output ------------------------------------------------------------------------------------------------

def plot(rows: list[BenchRow], path, title: str) -> None:
    _optional("matplotlib").use("Agg")
    plt = _optional("matplotlib.pyplot")

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in rows:
        bbarc = r.codec.startswith("bbarc")
        ax.scatter(r.compress_items_per_cpu_s, r.bits_per_dim, color="C3" if bbarc else "C0", s=40 if bbarc else 20)
        ax.annotate(r.codec, (r.compress_items_per_cpu_s, r.bits_per_dim), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("compression speed (items per CPU-second, log scale)")
    ax.set_ylabel("bits per dimension")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def as_dicts(rows: list[BenchRow]) -> list[dict]:
    return [asdict(r) for r in rows]
