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
