"""The tables fix the integer arithmetic of archive format v1: they must never change."""
import hashlib

import numpy as np

from bbarc import fixedpoint as fp


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
    return h.hexdigest()[:16]


def test_tables_are_monotone_and_exact_at_known_points():
    sig = fp.sigmoid_table()
    assert sig[0] == 0 and sig[-1] == 1 << 24 and sig[len(sig) // 2] == 1 << 23
    assert (np.diff(sig) >= 0).all()
    inv = fp.inverse_scale_table()
    assert inv[-fp.LOG_SCALE_MIN] == 1 << 24 and (np.diff(inv) < 0).all()
    edges = fp.logistic_bin_edges(12)
    assert len(edges) == 4095 and edges[2047] == 0 and (np.diff(edges) > 0).all()
    centres = fp.logistic_bin_centres(12)
    assert (centres[1:] > edges).all() and (centres[:-1] < edges).all()
    assert fp.mixture_weights([[0, 0], [-16, 0]]).tolist() == [[4096, 4096], [1507, 4096]]


def test_tables_match_the_golden_digest_of_format_v1():
    assert digest(fp.sigmoid_table(), fp.inverse_scale_table(), fp.weight_table()) == GOLDEN_SCALAR
    assert digest(fp.logistic_bin_edges(12), fp.logistic_bin_centres(12), fp.level_edges(256)) == GOLDEN_GRIDS


GOLDEN_SCALAR = "98f803baf78fb702"
GOLDEN_GRIDS = "3e851364cd935af3"


def test_sigmoid_table_tops_out_at_one_exactly():
    """The kernels replace a division by the sigmoid's top value with a shift (by ``fp.SIG_BITS``) for
    one-component codecs."""
    assert fp.sigmoid_table()[-1] == 1 << fp.SIG_BITS


def test_shipped_tables_are_the_decimal_computation():
    """The pinned file (tools/make_tables.py) holds exactly what ``decimal`` computes, under the pinned digest,
    and the table functions serve it (read-only) rather than computing."""
    computed = fp.compute_tables()
    with np.load(fp.PINNED_FILE, allow_pickle=False) as f:
        shipped = {name: f[name] for name in f.files}
    assert shipped.keys() == computed.keys()
    for name, table in computed.items():
        assert shipped[name].dtype == np.dtype("<i8") and np.array_equal(shipped[name], table), name
    assert fp.tables_digest(computed) == fp.PINNED_SHA256
    served = {"sigmoid": fp.sigmoid_table(), "inverse_scale": fp.inverse_scale_table(), "weight": fp.weight_table(),
              "bin_edges_12": fp.logistic_bin_edges(12), "bin_centres_12": fp.logistic_bin_centres(12)}
    for name, table in served.items():
        assert table is fp._pinned()[name] and not table.flags.writeable


def test_a_damaged_or_missing_table_file_is_ignored(tmp_path, monkeypatch):
    """Tables that are not the pinned ones are never used: the digest rejects them and ``decimal`` computes."""
    computed = fp.compute_tables()
    bad = dict(computed, sigmoid=computed["sigmoid"] + (np.arange(len(computed["sigmoid"])) == 100))
    np.savez(tmp_path / "bad.npz", **bad)
    for path in (tmp_path / "bad.npz", tmp_path / "missing.npz"):
        monkeypatch.setattr(fp, "PINNED_FILE", str(path))
        fp._pinned.cache_clear()
        try:
            assert fp._pinned() == {}
            assert np.array_equal(fp._table("sigmoid", fp._sigmoid_table), computed["sigmoid"])
        finally:
            fp._pinned.cache_clear()


def test_the_tables_are_package_data():
    """A non-editable install carries the pinned file (setuptools package-data)."""
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "tables/*.npz" in config["tool"]["setuptools"]["package-data"]["bbarc"]
