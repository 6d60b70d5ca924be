"""Compiled inner loops of the rANS coder (numba: integer-only, so bit-exact on every machine).

The stack is a 64-bit head in [2**32, 2**64) plus 32-bit words below it. Pops are inherently sequential (each
symbol's slot depends on the head left by the previous one), so the distribution's CDF is evaluated inside the
loop: tables by binary search, mixtures by a search that starts from a floating-point guess of the symbol and
compares exact integer CDF values. Only the values the coder needs are ever computed. Lane kernels code one row
of symbols for each of several messages in one call (``bbarc.ans.AnsLanes``).

State layout: ``state = uint64[2]`` = (head, number of words in ``buf``). Kernels return -1 on success, or the
index of the symbol that could not be coded: a push of a symbol of probability 0, or a pop that needed bits that
were never pushed (nothing is invented). The fixed-point constants are ``bbarc.fixedpoint``'s.
"""
from __future__ import annotations

import numpy as np

from .fixedpoint import INV_SCALE_BITS, POS_BITS, SIG_BITS, SIG_RANGE, SIG_STEP_BITS
from .jit import KernelGroup

HEAD_LOW = 1 << 32  # the head's lower bound; a fresh message's head equals it and holds no information
U32 = np.uint64(32)
LOW = np.uint64(HEAD_LOW)
MASK32 = np.uint64(0xFFFFFFFF)
_SIG_ONE = np.int64(1) << np.int64(SIG_BITS)
_FRAC = POS_BITS - SIG_STEP_BITS
_SPAN = (2 * SIG_RANGE) << POS_BITS
_PROD_LIMIT = np.int64(1) << np.int64(62)
_SAFE_INV = np.int64(1) << np.int64(31)
_POS_INV_SCALE = float(1 << (POS_BITS + INV_SCALE_BITS))
_POS_UNIT = 1.0 / (1 << POS_BITS)

# numba.njit, applied on the first call of any kernel here (bbarc.jit): importing this module loads no numba
_kernels = KernelGroup(globals())
jit = _kernels(cache=True, nogil=True)
inline = _kernels(cache=True, nogil=True, inline="always")


@inline
def _push_head(h, n, buf, start, freq, prec):
    """Push one symbol onto a head and word count held in locals (a hot loop keeps them in registers):
    returns (h, n). Renormalise when h >= freq * 2**(64 - prec), compared as h >> (64 - prec) >= freq: the
    product overflows 64 bits when freq == 2**prec (a floor-less codec sure of its symbol)."""
    f = np.uint64(freq)
    if (h >> np.uint64(64 - prec)) >= f:
        buf[n] = np.uint32(h & MASK32)
        n += np.uint64(1)
        h >>= U32
    return ((h // f) << np.uint64(prec)) + (h % f) + np.uint64(start), n


@inline
def _push(state, buf, start, freq, prec):
    state[0], state[1] = _push_head(state[0], state[1], buf, start, freq, prec)


@inline
def _pop_head(h, n, buf, cf, start, freq, prec):
    """Pop one symbol (slot ``cf`` in [start, start + freq)) off a head and word count held in locals:
    returns (h, n, ok); not ok when the stack holds too few bits (nothing is invented)."""
    h = np.uint64(freq) * (h >> np.uint64(prec)) + np.uint64(cf) - np.uint64(start)
    if h < LOW:
        if n == 0:
            return h, n, False
        n -= np.uint64(1)
        h = (h << U32) | np.uint64(buf[n])
    return h, n, True


@jit
def _pop(state, buf, cf, start, freq, prec):
    h, n, ok = _pop_head(state[0], state[1], buf, cf, start, freq, prec)
    if ok:
        state[0], state[1] = h, n
    return ok


# --- uniform symbols ---------------------------------------------------------------------------------------


@jit
def push_uniform(state, buf, symbols, bits):
    """``_push_head`` with frequency 1, written without its division: head << bits | symbol."""
    h, n, b = state[0], state[1], np.uint64(bits)
    for i in range(len(symbols) - 1, -1, -1):
        if (h >> np.uint64(64 - bits)) >= np.uint64(1):
            buf[n] = np.uint32(h & MASK32)
            n += np.uint64(1)
            h >>= U32
        h = (h << b) + np.uint64(symbols[i])
    state[0], state[1] = h, n
    return -1


@jit
def pop_uniform(state, buf, out, bits):
    """``_pop_head`` with frequency 1: the symbol is the head's low bits, the head shifts down by ``bits``."""
    mask = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    h, n, b = state[0], state[1], np.uint64(bits)
    for i in range(len(out)):
        cf = np.int64(h & mask)
        h2 = h >> b
        if h2 < LOW:
            if n == 0:
                state[0], state[1] = h, n
                return i
            n -= np.uint64(1)
            h2 = (h2 << U32) | np.uint64(buf[n])
        h = h2
        out[i] = cf
    state[0], state[1] = h, n
    return -1


# --- integer CDF tables (any categorical a plugin builds itself) --------------------------------------------


@jit
def push_table(state, buf, symbols, r0, cdf, prec):
    for i in range(len(symbols) - 1, -1, -1):
        s, r = symbols[i], r0 + i
        _push(state, buf, cdf[r, s], cdf[r, s + 1] - cdf[r, s], prec)
    return -1


@jit
def pop_table(state, buf, out, r0, cdf, prec):
    mask = (np.uint64(1) << np.uint64(prec)) - np.uint64(1)
    n_sym = cdf.shape[1] - 1
    for i in range(len(out)):
        r = r0 + i
        cf = np.int64(state[0] & mask)
        lo, hi = 0, n_sym
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if cdf[r, mid] <= cf:
                lo = mid
            else:
                hi = mid
        if not _pop(state, buf, cf, cdf[r, lo], cdf[r, lo + 1] - cdf[r, lo], prec):
            return i
        out[i] = lo
    return -1


# --- logistic mixtures over fixed bins ----------------------------------------------------------------------


@inline
def _sigmoid(t, table):
    p = t + (SIG_RANGE << POS_BITS)
    if p <= 0:
        return table[0]
    if p >= _SPAN:
        return table[len(table) - 1]
    j = p >> _FRAC
    return table[j] + (((table[j + 1] - table[j]) * (p & ((1 << _FRAC) - 1))) >> _FRAC)


@inline
def _mass(e, r, mu, inv, w, table):
    """Sum over components of weight * sigmoid((e - mean) / scale): the unnormalised mixture CDF at edge e, for
    parameter row r (rows are indexed, not sliced: a view per symbol costs more than the arithmetic)."""
    c = np.int64(0)
    s = np.int64(0)
    for m in range(mu.shape[1]):
        wm, im = w[r, m], inv[r, m]
        if wm == 0:
            continue
        d = e - mu[r, m]
        if im < _SAFE_INV:  # |d| < 2**31 (means and edges lie within 2**30): the product cannot overflow
            s = _sigmoid((d * im) >> INV_SCALE_BITS, table)
        else:  # beyond this limit the sigmoid saturates anyway; the limit only avoids overflow
            lim = _PROD_LIMIT // im
            if d >= lim:
                s = table[len(table) - 1]
            elif d <= -lim:
                s = table[0]
            else:
                s = _sigmoid((d * im) >> INV_SCALE_BITS, table)
        c += wm * s
    return c if mu.shape[1] > 1 else s  # one component: its weight cancels (see _denom)


@inline
def _denom(r, w, top):
    """The CDF's denominator: sum of weights * sigmoid(inf). With one component the weight cancels exactly,
    floor(w*s*A / (w*top)) = floor(s*A / top), so mass and denominator leave it out (and ``_finish`` shifts)."""
    if w.shape[1] == 1:
        return top
    t = np.int64(0)
    for m in range(w.shape[1]):
        t += w[r, m]
    return t * top


@inline
def _cdf(k, edges, r, mu, inv, w, denom, table, prec, floor):
    """Integer CDF of symbol boundary k. With ``floor`` every symbol keeps frequency >= 1 (the '+ k' term);
    without it, symbols in the far tails get frequency 0 and can be popped never and pushed never."""
    n_sym = len(edges) + 1
    if k <= 0:
        return np.int64(0)
    if k >= n_sym:
        return np.int64(1) << np.int64(prec)
    return _finish(_mass(edges[k - 1], r, mu, inv, w, table), k, n_sym, denom, prec, floor)


@inline
def _finish(c, k, n_sym, denom, prec, floor):
    if floor:
        num = c * ((np.int64(1) << np.int64(prec)) - n_sym)
        return (num >> SIG_BITS if denom == _SIG_ONE else num // denom) + k
    return (c << np.int64(prec)) >> SIG_BITS if denom == _SIG_ONE else (c << np.int64(prec)) // denom


@inline
def _probe(k, cf, edges, r, mu, inv, w, denom, table, prec, floor):
    """(CDF(k) <= cf, the mixture mass at edge k), decided without the division of ``_cdf``:
    floor(c * A / D) + f <= cf  <=>  c * A < (cf - f + 1) * D. Both products stay below 2**62 for the precisions
    ``codecs.max_precision`` allows. The mass gives CDF(k) later (``_finish``) without evaluating it again."""
    n_sym = len(edges) + 1
    if k <= 0:
        return True, np.int64(0)
    if k >= n_sym:
        return False, np.int64(0)
    c = _mass(edges[k - 1], r, mu, inv, w, table)
    if floor:
        return c * ((np.int64(1) << np.int64(prec)) - n_sym) < (cf - k + 1) * denom, c
    return (c << np.int64(prec)) < (cf + 1) * denom, c


@jit
def _cdf_from_mass(k, c, n_sym, denom, prec, floor):
    if k <= 0:
        return np.int64(0)
    if k >= n_sym:
        return np.int64(1) << np.int64(prec)
    return _finish(c, k, n_sym, denom, prec, floor)


@jit
def _search_sorted(values, x):
    """Number of entries of the ascending ``values`` that are <= x (written so the compiler can avoid branches)."""
    n = len(values)
    if n == 0 or values[0] > x:
        return 0
    base = 0
    while n > 1:
        half = n >> 1
        base = base + half if values[base + half] <= x else base
        n -= half
    return base + 1


@inline
def _guess(cf, edges, step, r, mu, inv, w, prec):
    """The symbol whose slot probably holds ``cf``: the inverse CDF of the heaviest component, located on the
    grid (directly when its edges are ``step`` apart or are the equal-mass logistic bins, else by search). Only
    a starting point for the exact integer search, so floating point is fine here: the popped symbol never
    depends on it."""
    m = 0
    for j in range(1, w.shape[1]):
        if w[r, j] > w[r, m]:
            m = j
    u = (cf + 0.5) / (np.int64(1) << np.int64(prec))
    e = mu[r, m] + np.log(u / (1.0 - u)) * _POS_INV_SCALE / inv[r, m]
    if step < 0:  # the 2**-step bins of equal standard-logistic mass: bin floor(2**-step * sigmoid(e))
        t = e * _POS_UNIT
        if t >= 700.0:
            return len(edges)
        if t <= -700.0:
            return 0
        return min(np.int64((np.int64(1) << np.int64(-step)) / (1.0 + np.exp(-t))), len(edges))
    if step > 0:
        g = (e - edges[0]) / step + 1.0
        if g <= 0.0:
            return 0
        if g >= len(edges):
            return len(edges)
        return np.int64(g)
    if e >= 9.0e18:
        return len(edges)
    if e <= -9.0e18:
        return 0
    return _search_sorted(edges, np.int64(e))


@jit
def push_mixture(state, buf, symbols, r0, edges, step, mu, inv, w, table, prec, floor):
    """Push ``symbols``; symbol i uses row ``r0 + i`` of the mixture parameters."""
    top = table[len(table) - 1]
    h, n = state[0], state[1]
    for i in range(len(symbols) - 1, -1, -1):
        r = r0 + i
        denom = _denom(r, w, top)
        lo = _cdf(symbols[i], edges, r, mu, inv, w, denom, table, prec, floor)
        hi = _cdf(symbols[i] + 1, edges, r, mu, inv, w, denom, table, prec, floor)
        if hi == lo:
            state[0], state[1] = h, n
            return i  # a symbol of probability 0 cannot be coded
        h, n = _push_head(h, n, buf, lo, hi - lo, prec)
    state[0], state[1] = h, n
    return -1


@jit
def pop_mixture(state, buf, out, r0, edges, step, mu, inv, w, table, prec, floor):
    """Find the symbol k with CDF(k) <= cf < CDF(k + 1): gallop outwards from a guess (``_guess``), then bisect,
    comparing without divisions. A good guess needs far fewer CDF evaluations than bisecting the whole grid; the
    symbol found is the same whatever the guess. Symbol i uses row ``r0 + i`` of the mixture parameters."""
    mask = (np.uint64(1) << np.uint64(prec)) - np.uint64(1)
    n_sym = len(edges) + 1
    top = table[len(table) - 1]
    h, n = state[0], state[1]
    for i in range(len(out)):
        r = r0 + i
        denom = _denom(r, w, top)
        cf = np.int64(h & mask)
        g = _guess(cf, edges, step, r, mu, inv, w, prec) if n_sym > 4 else 1
        # One probe site (so the compiler can inline it): gallop from g until cf is bracketed, then bisect.
        # Invariant once bracketed: CDF(lo) <= cf < CDF(hi); m_lo, m_hi are the masses at lo and hi.
        lo, hi, m_lo, m_hi = -1, n_sym + 1, np.int64(0), np.int64(0)
        k, gap = g, 1
        while True:
            below, c = _probe(k, cf, edges, r, mu, inv, w, denom, table, prec, floor)
            if below:
                lo, m_lo = k, c
            else:
                hi, m_hi = k, c
            if hi <= n_sym and lo >= 0:
                if hi - lo == 1:
                    break
                k = (lo + hi) >> 1
            elif lo < 0:  # still above cf: step down, doubling
                k = max(hi - gap, 0)
                gap <<= 1
            else:  # still at or below cf: step up, doubling
                k = min(lo + gap, n_sym)
                gap <<= 1
        c_lo = _cdf_from_mass(lo, m_lo, n_sym, denom, prec, floor)
        c_hi = _cdf_from_mass(hi, m_hi, n_sym, denom, prec, floor)
        h, n, ok = _pop_head(h, n, buf, cf, c_lo, c_hi - c_lo, prec)
        if not ok:
            state[0], state[1] = h, n
            return i
        out[i] = lo
    state[0], state[1] = h, n
    return -1


@jit
def mixture_cdf_rows(edges, step, mu, inv, w, table, prec, floor, out):
    """Full integer CDF tables (n, S+1); for tests and cost accounting, never on the coding path."""
    top = table[len(table) - 1]
    for i in range(mu.shape[0]):
        denom = _denom(i, w, top)
        for k in range(len(edges) + 2):
            out[i, k] = _cdf(k, edges, i, mu, inv, w, denom, table, prec, floor)


@jit
def mixture_weights(logits, table, out):
    """Integer softmax per row (see ``fixedpoint.mixture_weights``): table[max - logit], 0 past the table."""
    for r in range(logits.shape[0]):
        top = logits[r, 0]
        for m in range(1, logits.shape[1]):
            top = max(top, logits[r, m])
        for m in range(logits.shape[1]):
            d = top - logits[r, m]
            out[r, m] = table[d] if d < len(table) else 0


@jit
def prepare_mixture(mean, log_scale, weights, inv_table, ls_min, mean_limit, weight_max, inv):
    """Validate mixture parameters and look up each inverse scale, in one pass: 0 if valid, 1 if a mean is out of
    range, 2 if a weight is out of range or a row's weights are all zero."""
    for r in range(mean.shape[0]):
        total = 0
        for m in range(mean.shape[1]):
            if abs(mean[r, m]) > mean_limit:
                return 1
            wm = weights[r, m]
            if wm < 0 or wm > weight_max:
                return 2
            total += wm
            k = min(max(log_scale[r, m], ls_min), ls_min + len(inv_table) - 1) - ls_min  # clip, then index
            inv[r, m] = inv_table[k]
        if total == 0:
            return 2
    return 0


# --- lanes: one call codes a row of symbols for each of several messages (bbarc.ans.AnsLanes) -----------------


@jit
def push_uniform_lanes(states, bufs, lanes, symbols, bits, status):
    for p in range(len(lanes)):
        status[p] = push_uniform(states[lanes[p]], bufs[lanes[p]], symbols[p], bits)


@jit
def pop_uniform_lanes(states, bufs, lanes, out, bits, status):
    for p in range(len(lanes)):
        status[p] = pop_uniform(states[lanes[p]], bufs[lanes[p]], out[p], bits)


@jit
def push_mixture_lanes(states, bufs, lanes, symbols, edges, step, mu, inv, w, table, prec, floor, status):
    """Lane ``lanes[p]`` gets ``symbols[p]`` with parameter rows p * n .. (p + 1) * n."""
    n = symbols.shape[1]
    for p in range(len(lanes)):
        status[p] = push_mixture(states[lanes[p]], bufs[lanes[p]], symbols[p], p * n, edges, step, mu, inv, w,
                                 table, prec, floor)


@jit
def pop_mixture_lanes(states, bufs, lanes, out, edges, step, mu, inv, w, table, prec, floor, status):
    n = out.shape[1]
    for p in range(len(lanes)):
        status[p] = pop_mixture(states[lanes[p]], bufs[lanes[p]], out[p], p * n, edges, step, mu, inv, w,
                                table, prec, floor)


@jit
def push_table_lanes(states, bufs, lanes, symbols, cdf, prec, status):
    n = symbols.shape[1]
    for p in range(len(lanes)):
        status[p] = push_table(states[lanes[p]], bufs[lanes[p]], symbols[p], p * n, cdf, prec)


@jit
def pop_table_lanes(states, bufs, lanes, out, cdf, prec, status):
    n = out.shape[1]
    for p in range(len(lanes)):
        status[p] = pop_table(states[lanes[p]], bufs[lanes[p]], out[p], p * n, cdf, prec)


# --- codec parameters from a network's integer outputs, in one pass (bbarc.plugins.heads) ---------------------
# Each does what building a LogisticMixture from slices of the outputs does (split, clip the log-scales, integer
# softmax, ``prepare_mixture``), writing contiguous (n, K) arrays. Return 0, or 1 if a mean is out of range.


@inline
def _inverse(ls, inv_table, ls_min):
    return inv_table[min(max(ls, ls_min), ls_min + len(inv_table) - 1) - ls_min]


@jit
def latent_head(out, low, inv_table, ls_min, mean_limit, mean, log_scale, weights, inv):
    """One logistic per latent from rows (B, 2C): C means, then C log-scales clipped below at ``low``."""
    c_n = out.shape[1] // 2
    for b in range(out.shape[0]):
        for c in range(c_n):
            r = b * c_n + c
            mu, ls = out[b, c], max(out[b, c_n + c], low)
            if abs(mu) > mean_limit:
                return 1
            mean[r, 0], log_scale[r, 0], weights[r, 0] = mu, ls, 1
            inv[r, 0] = _inverse(ls, inv_table, ls_min)
    return 0


@jit
def pixel_head(params, k, low, weight_table, inv_table, ls_min, mean_limit, mean, log_scale, weights, inv):
    """A K-component mixture per row of ``params`` (n, 3K): K logits (weights as ``mixture_weights``), K means,
    K log-scales clipped below at ``low``."""
    for r in range(params.shape[0]):
        top = params[r, 0]
        for m in range(1, k):
            top = max(top, params[r, m])
        for m in range(k):
            d = top - params[r, m]
            weights[r, m] = weight_table[d] if d < len(weight_table) else 0
            mu, ls = params[r, k + m], max(params[r, 2 * k + m], low)
            if abs(mu) > mean_limit:
                return 1
            mean[r, m], log_scale[r, m] = mu, ls
            inv[r, m] = _inverse(ls, inv_table, ls_min)
    return 0


@jit
def check_means(mean, mean_limit):
    """0 if every mean lies within +-``mean_limit``, else 1."""
    for r in range(mean.shape[0]):
        for m in range(mean.shape[1]):
            if abs(mean[r, m]) > mean_limit:
                return 1
    return 0


# --- two symbols, one component (a Bernoulli): the mixture kernels' integers with one sigmoid per symbol -------


@inline
def _binary_cut(r, edges, mu, inv, w, table, prec, floor):
    """CDF(1) of row r: what ``_cdf(1, ...)`` gives for a one-component mixture over two symbols."""
    return _finish(_mass(edges[0], r, mu, inv, w, table), 1, 2, table[len(table) - 1], prec, floor)


@jit
def push_binary_lanes(states, bufs, lanes, symbols, edges, mu, inv, w, table, prec, floor, status):
    """``push_mixture_lanes`` for two symbols and one component."""
    n = symbols.shape[1]
    one = np.int64(1) << np.int64(prec)
    for p in range(len(lanes)):
        state, buf = states[lanes[p]], bufs[lanes[p]]
        h, nw = state[0], state[1]
        status[p] = -1
        for i in range(n - 1, -1, -1):
            cut = _binary_cut(p * n + i, edges, mu, inv, w, table, prec, floor)
            lo, hi = (np.int64(0), cut) if symbols[p, i] == 0 else (cut, one)
            if hi == lo:
                status[p] = i  # a symbol of probability 0 cannot be coded
                break
            h, nw = _push_head(h, nw, buf, lo, hi - lo, prec)
        state[0], state[1] = h, nw


@jit
def pop_binary_lanes(states, bufs, lanes, out, edges, mu, inv, w, table, prec, floor, status):
    """``pop_mixture_lanes`` for two symbols and one component."""
    n = out.shape[1]
    one = np.int64(1) << np.int64(prec)
    mask = (np.uint64(1) << np.uint64(prec)) - np.uint64(1)
    for p in range(len(lanes)):
        state, buf = states[lanes[p]], bufs[lanes[p]]
        h, nw = state[0], state[1]
        status[p] = -1
        for i in range(n):
            cut = _binary_cut(p * n + i, edges, mu, inv, w, table, prec, floor)
            cf = np.int64(h & mask)
            k = 1 if cut <= cf else 0
            lo, hi = (cut, one) if k else (np.int64(0), cut)
            h, nw, ok = _pop_head(h, nw, buf, cf, lo, hi - lo, prec)
            if not ok:
                status[p] = i
                break
            out[p, i] = k
        state[0], state[1] = h, nw
