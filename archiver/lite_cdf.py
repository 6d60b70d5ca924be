"""Integer CDFs of discretised logistic mixtures in numpy: exactly the integers of ``bbarc.kernels``' ``_mass``,
``_denom`` and ``_cdf`` (their names here), for many rows and boundaries at once. ``bbarc.kernels_py`` codes with
them; all arithmetic is int64 and no product can overflow (see ``mass`` and ``mass_rows``).
"""
from __future__ import annotations

import numpy as np

from .fixedpoint import INV_SCALE_BITS, POS_BITS, SIG_RANGE, SIG_STEP_BITS

FRAC = POS_BITS - SIG_STEP_BITS  # fractional bits of a sigmoid argument between table steps
SPAN = (2 * SIG_RANGE) << POS_BITS  # the table's argument range, fixed point
_PROD_LIMIT = 1 << 62
_SAFE_INV = 1 << 31


def sigmoid_parts(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sigmoid table with its last value repeated, and its steps: clipping an argument to [0, span] then
    interpolates exactly as the kernels' ``_sigmoid`` (table[0] below, table[-1] at and above the span)."""
    ext = np.append(table, table[-1]).astype(np.int64)
    return ext, np.diff(ext)


def mass(e: np.ndarray, mu: np.ndarray, inv: np.ndarray, w: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The kernels' ``_mass`` for edges ``e`` (R, E) against parameter rows (R, K): (R, E) int64.

    Overflow: means and edges lie within 2**30, so |d| < 2**31 and d * inv < 2**62 while inv < 2**31. Larger
    inverse scales saturate past |d| >= 2**62 // inv, as in the kernels; the wrapped products there are
    replaced."""
    ext, step = sigmoid_parts(table)
    d = e[:, :, None] - mu[:, None, :]
    prod = d * inv[:, None, :]
    p = np.clip((prod >> INV_SCALE_BITS) + (SIG_RANGE << POS_BITS), 0, SPAN)
    j = p >> FRAC
    s = ext[j] + ((step[j] * (p & ((1 << FRAC) - 1))) >> FRAC)
    big = inv >= _SAFE_INV
    if big.any():
        lim = (_PROD_LIMIT // np.maximum(inv, 1))[:, None, :]
        wide = big[:, None, :]
        s = np.where(wide & (d >= lim), table[-1], np.where(wide & (d <= -lim), table[0], s))
    if mu.shape[1] == 1:
        return s[:, :, 0]  # one component: its weight cancels (the kernels' ``_denom``)
    return (w[:, None, :] * s).sum(axis=2)


def denom(w: np.ndarray, top: int) -> np.ndarray:
    """The kernels' ``_denom`` per row, (R, 1)."""
    if w.shape[1] == 1:
        return np.full((len(w), 1), top, np.int64)
    return w.sum(axis=1, keepdims=True) * top


def cdf(k: np.ndarray, edges, mu, inv, w, table, prec, floor) -> np.ndarray:
    """The kernels' ``_cdf`` at boundaries k (R, E) of rows (R, K). The kernels' shift when the denominator is
    2**24 is this floor division: masses are >= 0."""
    n_sym = len(edges) + 1
    out = np.zeros(k.shape, np.int64)
    inner = (k > 0) & (k < n_sym)
    if len(edges):
        c = mass(edges[np.clip(k, 1, n_sym - 1) - 1], mu, inv, w, table)
        d = denom(w, int(table[-1]))
        fin = c * ((1 << prec) - n_sym) // d + k if floor else (c << prec) // d
        out[inner] = fin[inner]
    out[k >= n_sym] = 1 << prec
    return out


def saturation(table: np.ndarray) -> tuple[int, int]:
    """(L, H): the kernels' ``_sigmoid`` is table[0] wherever (d * inv) < -L and table[-1] wherever d * inv >= H
    (its argument p = ((d * inv) >> 24) + 2**21 then falls where the table is flat: below index jz, the end of
    its run of table[0] values, or from jt, the start of its run of table[-1])."""
    centre = SIG_RANGE << SIG_STEP_BITS
    jz = min(int(np.argmax(table != table[0])) - 1, centre) if (table != table[0]).any() else centre
    jt = max(len(table) - int(np.argmax(table[::-1] != table[-1])), centre)
    return ((centre - jz) << (FRAC + INV_SCALE_BITS)), ((jt - centre) << (FRAC + INV_SCALE_BITS))


def mass_rows(edges: np.ndarray, mu: np.ndarray, inv: np.ndarray, w: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``mass`` at every edge of the grid for rows (R, K): (R, len(edges)), computing only the band of edges
    where a component's sigmoid is not saturated (``saturation``): d < -(L // inv) - 2 gives d * inv < -L, and
    d > H // inv + 2 gives d * inv >= H. The kernels' large-scale branch agrees (it saturates by the sign of d,
    and within the band |d| <= 2**14 + 2 stays below its limit). The saturated values are summed along each row
    (a difference array and a cumulative sum); the band's are added by index (float64 sums below 2**40: exact)."""
    rows, k_comp = mu.shape
    n_edges = len(edges)
    wf = np.ones_like(w) if k_comp == 1 else w  # one component: its weight cancels (the kernels' ``_denom``)
    low, high = saturation(table)
    lo = np.searchsorted(edges, mu - (low // inv + 2), "left")  # edges below lo: d < -(low // inv) - 2
    hi = np.searchsorted(edges, mu + (high // inv + 2), "right")  # edges from hi up: d > high // inv + 2
    diff = np.zeros((rows, n_edges + 1), np.int64)
    r = np.repeat(np.arange(rows), k_comp)
    np.add.at(diff, (r, hi.ravel()), (wf * table[-1]).ravel())
    if table[0]:
        diff[:, 0] += (wf * table[0]).sum(axis=1)
        np.add.at(diff, (r, lo.ravel()), -(wf * table[0]).ravel())
    saturated = np.cumsum(diff[:, :n_edges], axis=1)
    width = (hi - lo).ravel()
    g = np.repeat(np.arange(rows * k_comp), width)  # (row, component) of each band value
    k = np.arange(len(g)) - np.repeat(np.cumsum(width) - width, width) + np.repeat(lo.ravel(), width)
    ext, step = sigmoid_parts(table)
    p = np.clip(((edges[k] - mu.ravel()[g]) * inv.ravel()[g] >> INV_SCALE_BITS) + (SIG_RANGE << POS_BITS), 0, SPAN)
    j = p >> FRAC
    s = ext[j] + ((step[j] * (p & ((1 << FRAC) - 1))) >> FRAC)
    band = np.bincount(g // k_comp * n_edges + k, weights=s * wf.ravel()[g], minlength=rows * n_edges)
    return saturated + band.astype(np.int64).reshape(rows, n_edges)


def finish_rows(c: np.ndarray, w: np.ndarray, top: int, prec: int, floor: bool) -> np.ndarray:
    """The kernels' ``_cdf`` at every boundary 0 .. S from the masses (R, S-1) at the inner ones."""
    rows, n_sym = len(c), c.shape[1] + 1
    out = np.empty((rows, n_sym + 1), np.int64)
    out[:, 0], out[:, n_sym] = 0, 1 << prec
    num = c * ((1 << prec) - n_sym) if floor else c << prec
    inner = num >> 24 if w.shape[1] == 1 and top == 1 << 24 else num // denom(w, top)
    out[:, 1:n_sym] = inner + np.arange(1, n_sym) if floor else inner
    return out
