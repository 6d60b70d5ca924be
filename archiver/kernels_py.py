"""Light kernels: ``bbarc.kernels`` in numpy and plain Python, for decoding a few items without loading numba.

Every function here takes the arguments of the ``bbarc.kernels`` function of the same name and leaves the same
integers in the same places: states, words, popped symbols, statuses (a lane kernel's failure status included),
so a lane can be coded by either and decoded by the other. What differs is cost: loading the compiled kernels
costs the better part of a second in a fresh process (importing numba, initialising LLVM), more than a few items
cost here, while in bulk the compiled kernels are far faster. ``bbarc.kernel_choice`` chooses.

How: what does not depend on the coder's state is vectorised in numpy with the compiled kernels' integer
arithmetic (``bbarc.lite_cdf``): for a push, each symbol's (start, frequency); for a pop of a small row, the
whole integer CDF row, as the symbol is not known before its slot is. The state updates, which are sequential,
run in a Python loop on Python ints (exact and unbounded; the kernels' uint64 arithmetic never wraps, see
``_push_rows``). The kernels pop the k with CDF(k) <= slot < CDF(k + 1), which is unique (an empty interval holds
no slot), so a search of the row finds the same symbol; larger rows are searched as the kernels search them,
evaluating only the CDF values the search needs (``_search``).
"""
from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np

from . import lite_cdf as lc
from .fixedpoint import INV_SCALE_BITS, POS_BITS, SIG_RANGE

HEAD_LOW = 1 << 32  # the head's lower bound (as ``bbarc.kernels.HEAD_LOW``: a test checks they agree)
_MASK32 = 0xFFFFFFFF
_FRAC, _SPAN = lc.FRAC, lc.SPAN
_POS_INV_SCALE = float(1 << (POS_BITS + INV_SCALE_BITS))


# --- the sequential part: one lane's head and words -----------------------------------------------------------


def _push_rows(h: int, n: int, buf: np.ndarray, starts: list, freqs: list, prec: int):
    """Push symbols with slots [starts[i], starts[i] + freqs[i]) in reverse order onto head ``h`` and ``n`` words.
    Returns (h, n, i): i = -1, or the index of a frequency-0 symbol, where it stopped (``push_mixture``).
    As in the kernels, the head stays below 2**64: after the renormalisation h < f * 2**(64 - prec)."""
    shift = 64 - prec
    for i in range(len(starts) - 1, -1, -1):
        f = freqs[i]
        if f == 0:
            return h, n, i
        if (h >> shift) >= f:
            buf[n] = h & _MASK32
            n += 1
            h >>= 32
        h = ((h // f) << prec) + h % f + starts[i]
    return h, n, -1


def _pop_rows(h: int, n: int, buf: np.ndarray, flat, width: int, rows: int, prec: int, out: np.ndarray):
    """Pop ``rows`` symbols; symbol i's CDF is ``flat[i * width : (i + 1) * width]`` (a flat sequence of ints).
    Returns (h, n, status, reduced head): status -1, or the index of the symbol that found too few bits; then
    the head as reduced by that pop (``pop_mixture`` keeps it, the other kernels do not)."""
    mask = (1 << prec) - 1
    syms = []
    for i in range(rows):
        cf = h & mask
        base = i * width
        k = bisect_right(flat, cf, base, base + width) - 1
        start = flat[k]
        h2 = (flat[k + 1] - start) * (h >> prec) + cf - start
        if h2 < HEAD_LOW:
            if n == 0:
                out[:i] = syms
                return h, n, i, h2
            n -= 1
            h2 = (h2 << 32) | int(buf[n])
        h = h2
        syms.append(k - base)
    out[:] = syms
    return h, n, -1, h


def _lane(states, lanes, p):
    lane = int(lanes[p])
    return lane, int(states[lane, 0]), int(states[lane, 1])


def _store(states, lane, h, n):
    states[lane, 0] = h
    states[lane, 1] = n


# --- uniform symbols ---------------------------------------------------------------------------------------


def push_uniform_lanes(states, bufs, lanes, symbols, bits, status):
    for p in range(len(lanes)):
        lane, h, n = _lane(states, lanes, p)
        row = symbols[p].tolist()
        h, n, _ = _push_rows(h, n, bufs[lane], row, [1] * len(row), bits)
        _store(states, lane, h, n)
        status[p] = -1


def pop_uniform_lanes(states, bufs, lanes, out, bits, status):
    mask = (1 << bits) - 1
    for p in range(len(lanes)):
        lane, h, n = _lane(states, lanes, p)
        buf, syms, status[p] = bufs[lane], [], -1
        for i in range(out.shape[1]):
            cf = h & mask
            h2 = h >> bits
            if h2 < HEAD_LOW:
                if n == 0:  # the kernel leaves the state as it was before this pop
                    status[p] = i
                    break
                n -= 1
                h2 = (h2 << 32) | int(buf[n])
            h = h2
            syms.append(cf)
        out[p, : len(syms)] = syms
        _store(states, lane, h, n)


# --- integer CDF tables -----------------------------------------------------------------------------------


def push_table_lanes(states, bufs, lanes, symbols, cdf, prec, status):
    n_rows = symbols.shape[1]
    for p in range(len(lanes)):
        lane, h, n = _lane(states, lanes, p)
        rows = cdf[p * n_rows : (p + 1) * n_rows]
        idx = np.arange(n_rows)
        lo, hi = rows[idx, symbols[p]], rows[idx, symbols[p] + 1]
        h, n, _ = _push_rows(h, n, bufs[lane], lo.tolist(), (hi - lo).tolist(), prec)
        _store(states, lane, h, n)
        status[p] = -1


def pop_table_lanes(states, bufs, lanes, out, cdf, prec, status):
    n_rows = out.shape[1]
    for p in range(len(lanes)):
        lane, h, n = _lane(states, lanes, p)
        rows = np.ascontiguousarray(cdf[p * n_rows : (p + 1) * n_rows], dtype=np.int64)
        h, n, status[p], _ = _pop_rows(h, n, bufs[lane], memoryview(rows.reshape(-1)), rows.shape[1], n_rows,
                                       prec, out[p])
        _store(states, lane, h, n)  # a failed pop_table leaves the state as it was before that pop


# --- logistic mixtures -------------------------------------------------------------------------------------


def mixture_cdf_rows(edges, step, mu, inv, w, table, prec, floor, out):
    """Full integer CDF rows (n, S+1), as the kernel of that name."""
    out[...] = lc.finish_rows(lc.mass_rows(edges, mu, inv, w, table), w, int(table[-1]), prec, floor)


def push_mixture_lanes(states, bufs, lanes, symbols, edges, step, mu, inv, w, table, prec, floor, status):
    """Symbol i of lane ``lanes[p]`` uses parameter row p * n + i; status: the (last) symbol of probability 0."""
    n_rows = symbols.shape[1]
    for p in range(len(lanes)):
        lane, h, n = _lane(states, lanes, p)
        r = slice(p * n_rows, (p + 1) * n_rows)
        k = symbols[p][:, None] + np.array([0, 1], np.int64)
        c = lc.cdf(k, edges, mu[r], inv[r], w[r], table, prec, floor)
        h, n, status[p] = _push_rows(h, n, bufs[lane], c[:, 0].tolist(), (c[:, 1] - c[:, 0]).tolist(), prec)
        _store(states, lane, h, n)


def pop_mixture_lanes(states, bufs, lanes, out, edges, step, mu, inv, w, table, prec, floor, status):
    """Small rows (a few edges times components): whole CDF rows in numpy, then a search of each. Larger ones (256
    levels, 4096 latent bins), where a row costs more than the few CDF values a search needs: the compiled
    kernel's own search, in Python (``_search``). The symbol popped is the same either way (module docstring)."""
    n_rows = out.shape[1]
    for p in range(len(lanes)):
        lane, h, n = _lane(states, lanes, p)
        r = slice(p * n_rows, (p + 1) * n_rows)
        if len(edges) * mu.shape[1] > SEARCH_ABOVE:
            h, n, status[p], reduced = _search(h, n, bufs[lane], edges, mu[r], inv[r], w[r], table, prec, floor,
                                               out[p])
        else:
            mass = lc.mass_rows(edges, mu[r], inv[r], w[r], table)
            cdf = lc.finish_rows(mass, w[r], int(table[-1]), prec, floor)
            h, n, status[p], reduced = _pop_rows(h, n, bufs[lane], memoryview(cdf.reshape(-1)), cdf.shape[1],
                                                 n_rows, prec, out[p])
        _store(states, lane, reduced, n)  # a failed pop_mixture keeps the head that pop reduced


SEARCH_ABOVE = 64  # rows of more edges x components pop by search (the cheaper way, measured)


_TABLE_LISTS: tuple = (None, None)


def _table_lists(table: np.ndarray) -> tuple[list, list]:
    """The sigmoid table and its steps (a last 0 appended) as Python lists, kept for the last table seen (one
    tuple, replaced whole, so threads never see one table's lists under another)."""
    global _TABLE_LISTS
    cached = _TABLE_LISTS
    if cached[0] is not table:
        cached = _TABLE_LISTS = (table, (table.tolist(), np.diff(table).tolist() + [0]))
    return cached[1]


def _search(h, n, buf, edges, mu, inv, w, table, prec, floor, out):
    """``pop_mixture``'s loop in Python ints: per symbol, a guess from the heaviest component's inverse CDF (only
    a starting point), then gallop and bisect with the exact comparison of the kernels' ``_probe``. Python ints
    do not overflow, so the kernels' large-scale branch needs no counterpart: past its limit |d * inv| >= 2**62
    - inv, far beyond the table's span, which saturates the same way."""
    tbl, steps = _table_lists(table)
    edge = edges.tolist()
    top, n_sym, centre = tbl[-1], len(edge) + 1, SIG_RANGE << POS_BITS
    span, frac, fmask = _SPAN, _FRAC, (1 << _FRAC) - 1
    full = 1 << prec
    scale = (1 << prec) - n_sym if floor else full
    heavy = np.argmax(w, axis=1)
    mus, invs, ws = mu.tolist(), inv.tolist(), w.tolist()
    mu_g, inv_g = mu[np.arange(len(mu)), heavy].tolist(), inv[np.arange(len(mu)), heavy].tolist()
    denoms = lc.denom(w, top)[:, 0].tolist()
    mask, syms = full - 1, []
    # The first and last symbols' slots, for every row at once: most pixels of an image are 0 (or 255) with high
    # probability, and a slot there needs no search. CDF(1) <= cf < CDF(n - 1) otherwise.
    ends = lc.cdf(np.broadcast_to(np.array([1, n_sym - 1], np.int64), (len(mu), 2)), edges, mu, inv, w, table,
                  prec, floor)
    first, last = ends[:, 0].tolist(), ends[:, 1].tolist()

    def mass(k, comps):
        """The kernels' ``_mass`` at edge k - 1 (one component: its sigmoid alone, the weight cancels)."""
        e, c = edge[k - 1], 0
        for mu_m, inv_m, w_m in comps:
            p = ((e - mu_m) * inv_m >> INV_SCALE_BITS) + centre
            j = p >> frac
            s = tbl[0] if p <= 0 else top if p >= span else tbl[j] + ((steps[j] * (p & fmask)) >> frac)
            if one_comp:
                return s
            c += w_m * s
        return c

    one_comp = w.shape[1] == 1
    kf = 1 if floor else 0
    for i in range(len(mus)):
        cf = h & mask
        if cf < first[i]:
            lo, c_lo, c_hi = 0, 0, first[i]
        elif cf >= last[i]:
            lo, c_lo, c_hi = n_sym - 1, last[i], full
        else:
            comps, denom = list(zip(mus[i], invs[i], ws[i])), denoms[i]
            g = bisect_right(edge, mu_g[i] + math.log((cf + 0.5) / (full - cf - 0.5)) * _POS_INV_SCALE / inv_g[i])
            lo, hi, m_lo, m_hi, k, gap = -1, n_sym + 1, 0, 0, g, 1
            while True:  # as the kernel: gallop from g until cf is bracketed, then bisect
                if k <= 0:
                    below, c = True, 0
                elif k >= n_sym:
                    below, c = False, 0
                else:
                    c = mass(k, comps)
                    below = c * scale < (cf + 1 - kf * k) * denom
                if below:
                    lo, m_lo = k, c
                else:
                    hi, m_hi = k, c
                if hi <= n_sym and lo >= 0:
                    if hi - lo == 1:
                        break
                    k = (lo + hi) >> 1
                elif lo < 0:
                    k = hi - gap if hi > gap else 0
                    gap <<= 1
                else:
                    k = lo + gap if lo + gap < n_sym else n_sym
                    gap <<= 1
            c_lo = 0 if lo <= 0 else m_lo * scale // denom + kf * lo
            c_hi = full if hi >= n_sym else m_hi * scale // denom + kf * hi
        h2 = (c_hi - c_lo) * (h >> prec) + cf - c_lo
        if h2 < HEAD_LOW:
            if n == 0:
                out[:i] = syms
                return h, n, i, h2
            n -= 1
            h2 = (h2 << 32) | int(buf[n])
        h = h2
        syms.append(lo)
    out[:] = syms
    return h, n, -1, h


# --- parameter preparation ---------------------------------------------------------------------------------


def mixture_weights(logits, table, out):
    """Integer softmax per row: table[max - logit], 0 past the table."""
    d = logits.max(axis=1, keepdims=True) - logits
    out[...] = np.where(d < len(table), table[np.minimum(d, len(table) - 1)], 0)


def prepare_mixture(mean, log_scale, weights, inv_table, ls_min, mean_limit, weight_max, inv):
    """As the kernel: fill ``inv``; 0 if valid, else the code of the first fault in the kernel's scan order (row
    by row; in a row, each component's mean then its weight; then the row's weight sum), 1 for a mean out of
    range, 2 for a weight out of range or a row of zero weights. ``inv`` is left part-filled on a fault."""
    k = mean.shape[1]
    faults = []  # (row, position in the row's scan, code)
    for bad, offset, code in ((np.abs(mean) > mean_limit, 0, 1), ((weights < 0) | (weights > weight_max), 1, 2)):
        if bad.any():
            r, m = np.unravel_index(np.argmax(bad), bad.shape)
            faults.append((int(r), 2 * int(m) + offset, code))
    zero = weights.sum(axis=1) == 0
    if zero.any():
        faults.append((int(np.argmax(zero)), 2 * k, 2))
    idx = np.clip(log_scale, ls_min, ls_min + len(inv_table) - 1) - ls_min
    inv[...] = inv_table[idx]
    return min(faults)[2] if faults else 0


def push_binary_lanes(states, bufs, lanes, symbols, edges, mu, inv, w, table, prec, floor, status):
    """``kernels.push_binary_lanes``: the compiled kernel is a faster form of the mixture kernel for two symbols
    and one component (the same integers, tests/test_ans.py), so the light one is the mixture kernel itself."""
    push_mixture_lanes(states, bufs, lanes, symbols, edges, 0, mu, inv, w, table, prec, floor, status)


def pop_binary_lanes(states, bufs, lanes, out, edges, mu, inv, w, table, prec, floor, status):
    """``kernels.pop_binary_lanes``, as ``push_binary_lanes``."""
    pop_mixture_lanes(states, bufs, lanes, out, edges, 0, mu, inv, w, table, prec, floor, status)
