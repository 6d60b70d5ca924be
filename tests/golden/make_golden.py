"""Writes the golden archives of the current format version. Run once per new format version, never to
overwrite existing files: every later bbarc must decode them (tests/test_golden.py). Version 1 files were
written by bbarc before format 2 existed; this writes the version-2 ones (and the cases a later change to the
chunk payloads added, such as chain header version 2).

    python -m tests.golden.make_golden
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import bbarc
from bbarc.payload import raw_hash

HERE = Path(__file__).resolve().parent
VERSION = 2  # what bbarc.compress writes now
# The cases each format version has files of (version 1 also pinned the plugins' first and second weights).
CASES_OF_VERSION = {
    1: ("mnist-vae", "mnist-vae-binary", "zstd-float32be", "mnist-hvae", "mnist-vae-weights2",
        "mnist-vae-binary-weights2"),
    2: ("mnist-vae", "mnist-vae-binary", "zstd-float32be", "mnist-hvae",
        # chain header version 2 (HEADERLESS payloads); the cases above have version 1's seeded chains
        "mnist-vae-chain2", "mnist-vae-binary-chain2"),
}


def golden_inputs() -> dict[str, tuple[str, np.ndarray, np.ndarray | None, int]]:
    """name -> (model, items, labels, chunk size): rebuilt identically by the test from bundled data."""
    from tests.helpers import load_sample

    x = load_sample()[:24]
    binary = (np.random.RandomState(0).random_sample(x.shape) < x / 255.0).astype(np.uint8)
    labels = (np.arange(24) * 7 % 10).astype(np.int64)
    floats = np.random.default_rng(2026).normal(size=(30, 3, 4)).astype(">f4")
    return {
        "mnist-vae": ("mnist-vae", x, labels, 10),
        "mnist-vae-binary": ("mnist-vae-binary", binary, None, 10),
        "zstd-float32be": ("zstd", floats, None, 7),
        "mnist-hvae": ("mnist-hvae", x[:16], None, 8),
        # the plugins' second weight files (int8 backend); the cases above were written with the first ones
        "mnist-vae-weights2": ("mnist-vae", x, labels, 10),
        "mnist-vae-binary-weights2": ("mnist-vae-binary", binary, None, 10),
        "mnist-vae-chain2": ("mnist-vae", x, labels, 10),
        "mnist-vae-binary-chain2": ("mnist-vae-binary", binary, None, 10),
    }


def main() -> None:
    for name in CASES_OF_VERSION[VERSION]:
        model, items, labels, chunk = golden_inputs()[name]
        path = HERE / f"{name}-v{VERSION}.bbarc"
        if path.exists():
            print(f"{path.name} exists: golden files are never rewritten")
            continue
        bbarc.compress(items, path, model=model, chunk_size=chunk, labels=labels)
        print(f"wrote {path.name} ({path.stat().st_size} bytes), content {raw_hash(items.astype(items.dtype.newbyteorder('=')))}")


if __name__ == "__main__":
    main()
