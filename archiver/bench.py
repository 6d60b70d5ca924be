"""``bbarc bench``: bbarc against general-purpose compressors on the same data, measured in the same run.

Reports bits/dim and images/s (wall clock and per CPU-second of this process and its workers) for compression
and decompression, and can save a rate-vs-speed plot. bbarc's one-time start-up (reading the model's weights,
loading the compiled coder) is measured apart, as ``startup_s``, so the speeds are those of a running coder.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import resource
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


def _measure(fn):
    wall, cpu = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - wall, _cpu() - cpu


def _optional(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise UsageError(f"`bbarc bench` needs {module.split('.')[0]}: pip install 'bbarc[bench]'") from None


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


def bench(source, model: str = "mnist-vae", chunk_size: int = pipeline.DEFAULT_CHUNK, dataset: str | None = None,
          limit: int | None = None, workers: int = 1, progress=None) -> list[BenchRow]:
    with open_source(source, dataset) as src:
        n = min(len(src), limit) if limit else len(src)
        if n == 0:
            raise UsageError(f"{src.description} holds no items to benchmark")
        items = src.read(0, n)
    raw = items.tobytes()
    rows = []
    for name, (enc, dec) in baselines(items).items():
        blob, cw, cc = _measure(lambda: enc(raw))
        back, dw, dc = _measure(lambda: dec(blob))
        rows.append(_row(name, 8 * len(blob) / items.size, n, cw, dw, cc, dc, back == raw))
        if progress:
            progress(name)
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "bench.bbarc", Path(tmp) / "out.npy"
        _, startup, _ = _measure(lambda: _warm_up(items[:2], Path(tmp), model))
        result, cw, cc = _measure(lambda: pipeline.compress(items, path, model=model, chunk_size=chunk_size,
                                                            workers=workers))
        _, dw, dc = _measure(lambda: api.decompress(path, out, workers=workers))
        same = np.array_equal(np.load(out), items)
        row = _row(f"bbarc {model} (chunk {chunk_size})", result.bits_per_dim, n, cw, dw, cc, dc, same)
        rows.append(replace(row, startup_s=startup))
    return rows


def _warm_up(items: np.ndarray, tmp: Path, model: str) -> None:
    pipeline.compress(items, tmp / "warm.bbarc", model=model, chunk_size=len(items))
    api.decompress(tmp / "warm.bbarc", tmp / "warm.npy")


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

