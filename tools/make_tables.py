"""Writes the pinned fixed-point tables (``bbarc.fixedpoint.PINNED_FILE``) from their ``decimal`` definitions.

    python tools/make_tables.py            # writes archiver/tables/logistic-v1.npz, prints its digest
    python tools/make_tables.py --check    # exit 1 unless the shipped file holds exactly the computed tables

The tables are part of the archive format: regenerating must give the same file contents (the digest in
``bbarc.fixedpoint.PINNED_SHA256`` and tests/test_fixedpoint.py check it); a new scheme writes a new file.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from bbarc import fixedpoint as fp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the shipped file, write nothing")
    args = parser.parse_args()
    tables = fp.compute_tables()
    digest = fp.tables_digest(tables)
    if args.check:
        with np.load(fp.PINNED_FILE, allow_pickle=False) as f:
            shipped = {name: f[name] for name in f.files}
        same = shipped.keys() == tables.keys() and all(np.array_equal(shipped[k], tables[k]) for k in tables)
        print(f"{fp.PINNED_FILE}: {'matches' if same else 'DIFFERS from'} the computed tables ({digest})")
        return 0 if same and digest == fp.PINNED_SHA256 else 1
    np.savez(fp.PINNED_FILE, **{name: np.ascontiguousarray(t, dtype="<i8") for name, t in tables.items()})
    print(f"wrote {fp.PINNED_FILE}: {', '.join(sorted(tables))}; sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
