"""Compiled inner loops of the rANS coder (numba: integer-only, so bit-exact on every machine).

The stack is a 64-bit head in [2**32, 2**64) plus 32-bit words below it. Pops are inherently sequential (each
symbol's slot depends on the head left by the previous one), so the distribution's CDF is evaluated inside the
loop, by binary search over the integer CDF: only the values the coder needs are ever computed.

State layout: ``state = uint64[2]`` = (head, number of words in ``buf``). Kernels return -1 on success, or the
index of the symbol whose pop needed bits that were never pushed (the caller raises; nothing is invented).
"""
from __future__ import annotations

import numba
import numpy as np

U32 = np.uint64(32)
LOW = np.uint64(1) << U32  # the head's lower bound; a fresh stack's head equals it and holds no information
MASK32 = np.uint64(0xFFFFFFFF)
POS_BITS = 16
SIG_STEP_BITS = 6
SIG_RANGE = 32
INV_SCALE_BITS = 24
_FRAC = POS_BITS - SIG_STEP_BITS
_SPAN = (2 * SIG_RANGE) << POS_BITS
_PROD_LIMIT = np.int64(1) << np.int64(62)

jit = numba.njit(cache=True, nogil=True)


@jit
def _push(state, buf, start, freq, prec):
    h = state[0]
    f = np.uint64(freq)
    if h >= (f << np.uint64(64 - prec)):
        buf[state[1]] = np.uint32(h & MASK32)
        state[1] += np.uint64(1)
        h >>= U32
    state[0] = ((h // f) << np.uint64(prec)) + (h % f) + np.uint64(start)


@jit
def _pop(state, buf, cf, start, freq, prec):
    h = np.uint64(freq) * (state[0] >> np.uint64(prec)) + np.uint64(cf) - np.uint64(start)
    if h < LOW:
        if state[1] == 0:
            return False
        state[1] -= np.uint64(1)
        h = (h << U32) | np.uint64(buf[state[1]])
    state[0] = h
    return True


# --- uniform symbols ---------------------------------------------------------------------------------------


@jit
def push_uniform(state, buf, symbols, bits):
    for i in range(len(symbols) - 1, -1, -1):
        _push(state, buf, np.int64(symbols[i]), 1, bits)
    return -1


@jit
def pop_uniform(state, buf, out, bits):
    mask = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    for i in range(len(out)):
        cf = np.int64(state[0] & mask)
        if not _pop(state, buf, cf, cf, 1, bits):
            return i
        out[i] = cf
    return -1


# --- integer CDF tables (any categorical a plugin builds itself) --------------------------------------------


@jit
def push_table(state, buf, symbols, cdf, prec):
    for i in range(len(symbols) - 1, -1, -1):
        s = symbols[i]
        _push(state, buf, cdf[i, s], cdf[i, s + 1] - cdf[i, s], prec)
    return -1


@jit
def pop_table(state, buf, out, cdf, prec):
    mask = (np.uint64(1) << np.uint64(prec)) - np.uint64(1)
    n_sym = cdf.shape[1] - 1
    for i in range(len(out)):
        cf = np.int64(state[0] & mask)
        lo, hi = 0, n_sym
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if cdf[i, mid] <= cf:
                lo = mid
            else:
                hi = mid
        if not _pop(state, buf, cf, cdf[i, lo], cdf[i, lo + 1] - cdf[i, lo], prec):
            return i
        out[i] = lo
    return -1


# --- logistic mixtures over fixed bins ----------------------------------------------------------------------


@jit
def _sigmoid(t, table):
    p = t + (SIG_RANGE << POS_BITS)
    if p <= 0:
        return table[0]
    if p >= _SPAN:
        return table[len(table) - 1]
    j = p >> _FRAC
    return table[j] + (((table[j + 1] - table[j]) * (p & ((1 << _FRAC) - 1))) >> _FRAC)


@jit
def _cdf(k, edges, mu, inv, w, wsum, table, prec, floor):
    """Integer CDF of symbol boundary k. With ``floor`` every symbol keeps frequency >= 1 (the '+ k' term);
    without it, symbols in the far tails get frequency 0 and can be popped never and pushed never."""
    n_sym = len(edges) + 1
    if k <= 0:
        return np.int64(0)
    if k >= n_sym:
        return np.int64(1) << np.int64(prec)
    e = edges[k - 1]
    c = np.int64(0)
    top = table[len(table) - 1]
    for m in range(len(mu)):
        if w[m] == 0:
            continue
        d = e - mu[m]
        lim = _PROD_LIMIT // inv[m]
        if d >= lim:
            s = top
        elif d <= -lim:
            s = table[0]
        else:
            s = _sigmoid((d * inv[m]) >> INV_SCALE_BITS, table)
        c += w[m] * s
    if floor:
        return (c * ((np.int64(1) << np.int64(prec)) - n_sym)) // (wsum * top) + k
    return (c << np.int64(prec)) // (wsum * top)


@jit
def push_mixture(state, buf, symbols, edges, mu, inv, w, table, prec, floor):
    for i in range(len(symbols) - 1, -1, -1):
        wsum = w[i].sum()
        lo = _cdf(symbols[i], edges, mu[i], inv[i], w[i], wsum, table, prec, floor)
        hi = _cdf(symbols[i] + 1, edges, mu[i], inv[i], w[i], wsum, table, prec, floor)
        if hi == lo:
            return i  # a symbol of probability 0 cannot be coded
        _push(state, buf, lo, hi - lo, prec)
    return -1


@jit
def pop_mixture(state, buf, out, edges, mu, inv, w, table, prec, floor):
    mask = (np.uint64(1) << np.uint64(prec)) - np.uint64(1)
    n_sym = len(edges) + 1
    for i in range(len(out)):
        wsum = w[i].sum()
        cf = np.int64(state[0] & mask)
        lo, hi = 0, n_sym
        c_lo, c_hi = np.int64(0), np.int64(1) << np.int64(prec)
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            c = _cdf(mid, edges, mu[i], inv[i], w[i], wsum, table, prec, floor)
            if c <= cf:
                lo, c_lo = mid, c
            else:
                hi, c_hi = mid, c
        if not _pop(state, buf, cf, c_lo, c_hi - c_lo, prec):
            return i
        out[i] = lo
    return -1


@jit
def mixture_cdf_rows(edges, mu, inv, w, table, prec, floor, out):
    """Full integer CDF tables (n, S+1); for tests and cost accounting, never on the coding path."""
    for i in range(mu.shape[0]):
        wsum = w[i].sum()
        for k in range(len(edges) + 2):
            out[i, k] = _cdf(k, edges, mu[i], inv[i], w[i], wsum, table, prec, floor)
