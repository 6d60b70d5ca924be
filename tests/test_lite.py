"""The light kernels (bbarc.kernels_py) leave exactly the integers of the compiled ones (bbarc.kernels): states,
words, symbols and statuses, failures included; so archives decode the same whichever codes them."""
import numpy as np
import pytest

from bbarc import fixedpoint as fp
from bbarc import kernels as K
from bbarc import kernels_py as P
from bbarc.codecs import Grid, LogisticMixture, max_precision

SEEDS = range(40)
FILL = -7  # popped symbols a failed pop never writes keep this value in both outputs


def _lanes(rng, count: int, words: int = 64, empty: bool = False):
    """Random lanes: heads anywhere in [2**32, 2**64), up to ``words`` words; ``empty``: some fresh messages
    and some nearly empty ones, so that pops run out of bits."""
    states = np.zeros((count, 2), np.uint64)
    bufs = np.zeros((count, 4096), np.uint32)
    for j in range(count):
        kind = (0 if j == 0 else rng.integers(3)) if empty else 2  # with ``empty``, lane 0 is fresh
        head = 1 << 32 if kind == 0 else int(rng.integers(1 << 32, (1 << 63) - 1)) * int(rng.integers(1, 3))
        states[j] = (head, 0 if kind < 2 else rng.integers(0, words))
        bufs[j] = rng.integers(0, 1 << 32, 4096, dtype=np.uint32)
    return states, bufs


def _same(kernel: str, lanes, states, bufs, out_shape, *args):
    """Run ``kernel`` of both modules on copies of the same lanes; compare everything they leave. Returns the
    lanes as left (states, words), the popped symbols and the status."""
    results = []
    for mod in (K, P):
        s, b = states.copy(), bufs.copy()
        out = None if out_shape is None else np.full(out_shape, FILL, np.int64)
        status = np.full(len(lanes), 99, np.int64)
        getattr(mod, kernel)(*((s, b, lanes) if out is None else (s, b, lanes, out)), *args, status)
        results.append((s, b, out, status))
    (s1, b1, o1, st1), (s2, b2, o2, st2) = results
    assert np.array_equal(s1, s2) and np.array_equal(b1, b2) and np.array_equal(st1, st2)
    assert o1 is None or np.array_equal(o1, o2)
    return results[0]


def _some_lanes(rng, count: int) -> np.ndarray:
    """All lanes or all but one, in a random order (lane p of a call codes lane lanes[p])."""
    return rng.permutation(count)[: max(1, count - int(rng.integers(2)))].astype(np.int64)


def test_head_bound_agrees():
    assert P.HEAD_LOW == K.HEAD_LOW


@pytest.mark.parametrize("seed", SEEDS)
def test_uniform(seed):
    rng = np.random.default_rng(seed)
    bits = int(rng.choice([1, 2, 8, 12, 16, 31, int(rng.integers(1, 32))]))
    states, bufs = _lanes(rng, int(rng.integers(1, 5)), empty=seed % 2 == 0)
    lanes, n = _some_lanes(rng, len(states)), int(rng.integers(1, 200))
    symbols = rng.integers(0, 1 << bits, (len(lanes), n))
    pushed, words, _, _ = _same("push_uniform_lanes", lanes, states, bufs, None, symbols, bits)
    _, _, out, status = _same("pop_uniform_lanes", lanes, pushed, words, (len(lanes), n), bits)
    assert np.array_equal(out, symbols) and (status == -1).all()  # what was pushed pops back
    _, _, _, status = _same("pop_uniform_lanes", lanes, states, bufs, (len(lanes), 3 * n), bits)
    if seed % 2 == 0 and 0 in lanes:
        assert status[list(lanes).index(0)] == 0  # a fresh lane has no bits to pop


def _cdf_rows(rng, rows: int, n_sym: int, prec: int) -> np.ndarray:
    """Strictly rising integer CDF rows from 0 to 2**prec (some symbols of frequency 1)."""
    inner = np.sort(rng.choice(np.arange(1, 1 << prec), (rows, n_sym - 1)), axis=1) if n_sym > 1 else None
    cdf = np.zeros((rows, n_sym + 1), np.int64)
    cdf[:, -1] = 1 << prec
    for r in range(rows):
        vals = np.unique(inner[r]) if inner is not None else np.array([], np.int64)
        while len(vals) < n_sym - 1:  # rare duplicates: refill
            vals = np.unique(np.append(vals, rng.integers(1, 1 << prec)))
        cdf[r, 1:-1] = vals[: n_sym - 1]
    return cdf


@pytest.mark.parametrize("seed", SEEDS)
def test_table(seed):
    rng = np.random.default_rng(seed)
    prec = int(rng.integers(8, 23))
    n_sym = int(rng.integers(2, 40))
    states, bufs = _lanes(rng, int(rng.integers(1, 4)), empty=seed % 2 == 0)
    lanes, n = _some_lanes(rng, len(states)), int(rng.integers(1, 60))
    cdf = _cdf_rows(rng, len(lanes) * n, n_sym, prec)
    symbols = rng.integers(0, n_sym, (len(lanes), n))
    pushed, words, _, _ = _same("push_table_lanes", lanes, states, bufs, None, symbols, cdf, prec)
    _, _, out, _ = _same("pop_table_lanes", lanes, pushed, words, (len(lanes), n), cdf, prec)
    assert np.array_equal(out, symbols)
    _same("pop_table_lanes", lanes, states, bufs, (len(lanes), n), cdf, prec)


GRIDS = [Grid.levels(256), Grid.latent(12), Grid.binary(), Grid.levels(3), Grid.latent(4),
         Grid("uneven", np.array([-(1 << 30), -5, 0, 3, 1 << 20, 1 << 30], np.int64))]


def _mixture(rng, grid: Grid, rows: int, extreme: bool):
    """Random mixture parameters; ``extreme``: means at +-2**30 and beyond the grid, log-scales at and past both
    ends of the table (clipped), zero weights."""
    k = int(rng.choice([1, 1, 2, 3, 5, 16]))
    prec = int(rng.integers(max(2, int(np.ceil(np.log2(2 * grid.symbols)))), max_precision(k) + 1))
    margin = 4 << 16
    lo, hi = (-(1 << 30), 1 << 30) if extreme else (int(grid.edges.min()) - margin, int(grid.edges.max()) + margin)
    mean = rng.integers(lo, hi + 1, (rows, k))
    log_scale = rng.integers(fp.LOG_SCALE_MIN - 40, fp.LOG_SCALE_MAX + 40, (rows, k)) if extreme else \
        rng.integers(-150, 100, (rows, k))
    weights = fp.mixture_weights(rng.integers(-400, 400, (rows, k)))
    if extreme:
        mean[rng.random((rows, k)) < 0.2] = rng.choice([-(1 << 30), 1 << 30])
        weights[rng.random((rows, k)) < 0.2] = 0
        weights[np.arange(rows), rng.integers(0, k, rows)] = rng.integers(1, 4097, rows)
    return LogisticMixture(grid, mean, log_scale, weights, prec, floor=bool(rng.integers(2)))


@pytest.mark.parametrize("seed", range(3 * len(GRIDS) * 4))
@pytest.mark.parametrize("search_above", [0, 1 << 30])  # light pops search every row, or build every row
def test_mixture(seed, search_above, monkeypatch):
    monkeypatch.setattr(P, "SEARCH_ABOVE", search_above)
    rng = np.random.default_rng(seed)
    grid = GRIDS[seed % len(GRIDS)]
    states, bufs = _lanes(rng, int(rng.integers(1, 4)), empty=seed % 2 == 0)
    lanes, n = _some_lanes(rng, len(states)), int(rng.integers(1, 40))
    codec = _mixture(rng, grid, len(lanes) * n, extreme=seed % 3 == 0)
    args = codec._args()
    cdf = np.empty((len(codec), grid.symbols + 1), np.int64)
    K.mixture_cdf_rows(*args, cdf)
    light = np.full_like(cdf, FILL)
    P.mixture_cdf_rows(*args, light)
    assert np.array_equal(cdf, light)
    # symbols of probability > 0, and (without a floor) some of probability 0: a push stops there
    symbols = np.array([rng.choice(np.flatnonzero(np.diff(row) > 0)) for row in cdf]).reshape(len(lanes), n)
    zero = np.argwhere(np.diff(cdf, axis=1) == 0)
    if len(zero) and seed % 4 == 1:
        for r, s in zero[rng.permutation(len(zero))[:2]]:
            symbols[r // n, r % n] = s
    pushed, words, _, status = _same("push_mixture_lanes", lanes, states, bufs, None, symbols, *args)
    if (status == -1).all():
        _, _, out, _ = _same("pop_mixture_lanes", lanes, pushed, words, (len(lanes), n), *args)
        assert np.array_equal(out, symbols)
    _same("pop_mixture_lanes", lanes, states, bufs, (len(lanes), n), *args)


def test_a_failed_pop_keeps_what_each_kernel_keeps():
    """Popping off a fresh message fails at once: pop_mixture keeps the head its pop reduced, the others the head
    as it was; both kinds agree between the modules (checked by _same)."""
    states = np.array([[1 << 32, 0]], np.uint64)
    bufs = np.zeros((1, 16), np.uint32)
    lane = np.zeros(1, np.int64)
    codec = LogisticMixture(Grid.levels(256), np.array([[100 << 16]]), 0, 1, 20)
    s, _, _, status = _same("pop_mixture_lanes", lane, states, bufs, (1, 3), *codec._args())
    assert status[0] == 0 and int(s[0, 0]) < 1 << 32
    s, _, _, status = _same("pop_uniform_lanes", lane, states, bufs, (1, 3), 12)
    assert status[0] == 0 and int(s[0, 0]) == 1 << 32


@pytest.mark.parametrize("seed", range(20))
def test_prepare_mixture_and_weights(seed):
    rng = np.random.default_rng(seed)
    rows, k = int(rng.integers(1, 30)), int(rng.integers(1, 6))
    mean = rng.integers(-(1 << 30), (1 << 30) + 1, (rows, k))
    log_scale = rng.integers(fp.LOG_SCALE_MIN - 50, fp.LOG_SCALE_MAX + 50, (rows, k))
    weights = rng.integers(0, 4097, (rows, k))
    if seed % 4 == 1:  # faults at random places: which one the scan meets first decides the code
        mean[rng.integers(rows), rng.integers(k)] = rng.choice([-1, 1]) * ((1 << 30) + 1)
    if seed % 4 in (1, 2):
        weights[rng.integers(rows), rng.integers(k)] = rng.choice([-1, 4097])
    if seed % 4 == 3:
        weights[rng.integers(rows)] = 0
    codes, invs = [], []
    for mod in (K, P):
        inv = np.zeros((rows, k), np.int64)
        codes.append(mod.prepare_mixture(mean, log_scale, weights, fp.inverse_scale_table(), fp.LOG_SCALE_MIN,
                                         1 << 30, 1 << fp.WEIGHT_BITS, inv))
        invs.append(inv)
    assert codes[0] == codes[1] and (seed % 4 == 0) == (codes[0] == 0)
    if codes[0] == 0:
        assert np.array_equal(invs[0], invs[1])
    logits = rng.integers(-3000, 3000, (rows, k))
    out = [np.empty((rows, k), np.int64) for _ in range(2)]
    K.mixture_weights(logits, fp.weight_table(), out[0])
    P.mixture_weights(logits, fp.weight_table(), out[1])
    assert np.array_equal(*out)
