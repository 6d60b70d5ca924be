"""Crafted archives: edits to an archive's metadata, index or chunk seed headers with every checksum recomputed,
so that what reads the archive meets the edit in its parsers, not in a checksum check. Shared by the crafted and
randomized damage suites, and the commands they run as a user would, with the peak memory each one used."""
from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import zstandard

import bbarc
from bbarc.errors import BbarcError
from bbarc.formats import layout

TRACEBACK = "Traceback (most recent call last)"
CLEAN_EXITS = {0, 2, 3, 4, 5}
MEMORY_SLACK_MB = 100  # over the same command on the intact archive


def split(data: bytes) -> tuple[int, bytes, bytes, dict]:
    """(format version, metadata JSON, the records, the index as JSON) of an intact archive."""
    _, version, n = layout.HEADER_FIXED.unpack_from(data)
    meta = data[layout.HEADER_FIXED.size : layout.HEADER_FIXED.size + n]
    header_end = layout.HEADER_FIXED.size + n + layout.CRC.size
    offset, length, _, _, _ = layout.TRAILER.unpack_from(data, len(data) - layout.TRAILER.size)
    index = json.loads(zstandard.ZstdDecompressor().decompress(data[offset : offset + length]))
    return version, meta, data[header_end:offset], index


def join(version: int, meta: bytes, records: bytes, index_json: bytes, frame: bytes | None = None) -> bytes:
    """An archive of these parts, every checksum and offset in header and trailer computed afresh (``frame``:
    the index frame as is, instead of ``index_json`` compressed)."""
    header = layout.HEADER_FIXED.pack(layout.MAGIC, version, len(meta)) + meta + layout.CRC.pack(layout.crc32(meta))
    frame = zstandard.ZstdCompressor(level=3).compress(index_json) if frame is None else frame
    offset = len(header) + len(records)
    trailer = layout.TRAILER.pack(offset, len(frame), layout.crc32(frame), version, layout.END_MAGIC)
    return header + records + frame + trailer


def edit(data: bytes, meta=None, index=None, meta_raw: bytes | None = None, index_raw: bytes | None = None,
         index_frame: bytes | None = None) -> bytes:
    """``data`` with its metadata and index edited: ``meta``/``index`` edit the parsed JSON in place, ``meta_raw``/
    ``index_raw`` replace the JSON text. Record offsets in the index follow a metadata of another length."""
    version, old_meta, records, parsed = split(data)
    if meta is not None:
        value = json.loads(old_meta)
        meta(value)
        meta_raw = json.dumps(value, separators=(",", ":")).encode()
    new_meta = old_meta if meta_raw is None else meta_raw
    for entry in parsed.get("chunks", []) + parsed.get("attachments", []):
        entry["offset"] += len(new_meta) - len(old_meta)
    if index is not None:
        index(parsed)
    return join(version, new_meta, records, json.dumps(parsed).encode() if index_raw is None else index_raw,
                index_frame)


def rle_frame(declared: int, content: int | None = None) -> bytes:
    """A zstd frame declaring ``declared`` bytes and holding ``content`` zero bytes (default: as declared) in RLE
    blocks: a few bytes per 128 KiB, so a small file can claim gigabytes."""
    content = declared if content is None else content
    out = [struct.pack("<IB", 0xFD2FB528, 0xE0), struct.pack("<Q", declared)]  # single segment, 8-byte size
    block = 1 << 17
    sizes = [block] * (content // block) + ([content % block] if content % block else []) or [0]
    for i, size in enumerate(sizes):
        last = i == len(sizes) - 1
        out.append((last | 1 << 1 | size << 3).to_bytes(3, "little") + b"\0")
    return b"".join(out)


def seed_frame(meta: dict | bytes, body: bytes = b"") -> bytes:
    """A seed header frame of this JSON (``bbarc.payload``'s layout) and these item and side bytes."""
    blob = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return zstandard.ZstdCompressor().compress(struct.pack("<I", len(blob)) + blob + body)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    max_rss_mb: float


def cli_measured(*args, cwd: str | None = None) -> Run:
    """``bbarc ARGS`` in a subprocess, as a user runs it, with its own peak resident memory (``os.wait4``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "bbarc.cli", *map(str, args)], stdout=out, stderr=err,
                                cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                   usage.ru_maxrss / 1024)


def check_api(path, original, tmp_path) -> list[str]:
    """Every API access on a crafted archive: a BbarcError or the original data. Returns what each step did."""
    done, peak = [], _peak_mb()

    def step(what, action):
        try:
            result = action()
        except BbarcError as exc:
            assert exc.exit_code in CLEAN_EXITS, (what, exc)
            done.append(f"{what}:{exc.exit_code}")
            return None
        done.append(f"{what}:ok")
        return result

    archive = step("open", lambda: bbarc.open(path))
    if archive is None:
        return done
    with archive:
        for i in (0, 3, len(archive) - 1):
            item = step(f"get {i}", lambda: archive[i])
            assert item is None or np.array_equal(item, original[i]) and item.dtype == original.dtype, (path, i)
        every = step("get all", lambda: archive[:])
        assert every is None or np.array_equal(every, original), path
        step("verify --deep", lambda: archive.verify(deep=True))
    out = tmp_path / "out.npy"
    if step("decompress", lambda: bbarc.decompress(path, out)) is not None:
        assert np.array_equal(np.load(out), original), path
    # The high-water mark of this process: any step that allocated what the archive declared shows here.
    assert _peak_mb() <= peak + MEMORY_SLACK_MB, (path, done, _peak_mb(), peak)
    return done


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
