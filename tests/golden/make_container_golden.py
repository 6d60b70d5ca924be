"""Writes the golden container files of format version 2 (container layer only, no model). Like the archive
golden files they are written once and never rewritten: every later bbarc must read them
(tests/test_formats_container_golden.py).

    python -m tests.golden.make_container_golden
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bbarc.formats.container import ArchiveWriter

HERE = Path(__file__).resolve().parent


def container_v2_basic() -> dict:
    """What ``container-v2-basic.bin`` holds, in write order: ("attachment", name, data) and
    ("chunk", payload, item_count, raw_hash, scheme, shape runs, side arrays) steps, plus metadata and final."""
    labels = np.array([3, 1, 4], dtype="<i8")
    side1 = {
        "labels": np.array([1, 5, 9, 2], dtype="<i8"),
        "weights": np.arange(8, dtype=">f4").reshape(4, 2) / 4,
        "flags": np.array([True, False, False, True]),
    }
    return {
        "metadata": {"format": "bbarc-container-golden", "note": "µ-law ✓", "item_dtype": "|u1"},
        "steps": [
            ("attachment", "model.bbm", bytes(range(256)) * 4),
            ("chunk", b"chunk-0 payload", 3, "raw-0", "bits-back", [((2, 3), 3)], {"labels": labels}),
            ("chunk", bytes(range(40)), 4, "raw-1", "stored", [((2, 3), 1), ((4,), 2), ((), 1)], side1),
            ("attachment", "notes ✓", b"hello"),
            ("chunk", b"", 2, "raw-2", "bits-back", [((5,), 2)], {}),
        ],
        "final": {"item_count": 9, "chunks": 3},
    }


def write_container_v2_basic(path) -> None:
    spec = container_v2_basic()
    with ArchiveWriter(path, spec["metadata"], version=2) as w:
        for step in spec["steps"]:
            if step[0] == "attachment":
                w.add_attachment(step[1], step[2])
            else:
                _, payload, count, raw_hash, scheme, runs, side = step
                w.write_chunk(payload, w.item_count, count, raw_hash, scheme=scheme, item_shapes=runs, side=side)
        w.close(spec["final"])


def main() -> None:
    path = HERE / "container-v2-basic.bin"
    if path.exists():
        print(f"{path.name} exists: golden files are never rewritten")
        return
    write_container_v2_basic(path)
    print(f"wrote {path.name} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
