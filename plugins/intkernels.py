"""Compiled (numba) one-pass steps of ``bbarc.plugins.intnet``'s integer networks, used once the compiled
kernels are in use in a process (bulk coding; ``bbarc.kernel_choice``): requantising and combining an int8 layer's
two weight planes, and a small-batch int8 product. numpy's forms (``intnet``'s light path) take several passes;
the float64 operations are the same value by value, so the integers are too (tests/test_intnet.py runs both)."""
from __future__ import annotations

import numpy as np

from bbarc.jit import KernelGroup

_njit = KernelGroup(globals())  # numba.njit on first call (bbarc.jit): importing this module loads no numba


@_njit(cache=True, nogil=True)
def requantise(acc, rescale, act_max, to_int8, out):
    """min(floor(max(acc, 0) * rescale), act_max) per value (the float64 operations of the numpy expression, in
    one pass); with ``to_int8`` stored minus 128, the input form of an int8 layer."""
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            v = np.floor(max(acc[i, j], 0.0) * rescale[j])
            v = min(v, act_max)
            out[i, j] = v - 128.0 if to_int8 else v


@_njit(cache=True, nogil=True)
def requantise_planes(prod, offset, rescale, act_max, to_int8, out):
    """``requantise`` of an int8 layer's accumulators, combined from its products on the way
    (``_Int8Layer.__call__``): hi * 256 + lo + offset, the float64 sum of ``combine_planes``, in the same pass."""
    n = out.shape[1]
    for i in range(out.shape[0]):
        for j in range(n):
            v = np.floor(max(prod[i, j] * 256.0 + prod[i, n + j] + offset[j], 0.0) * rescale[j])
            v = min(v, act_max)
            out[i, j] = v - 128.0 if to_int8 else v


@_njit(cache=True, nogil=True)
def affine_planes(prod, offset, mul, add, out):
    """``affine_floor`` of an int8 layer's accumulators, combined from its products in the same pass."""
    n = out.shape[1]
    for i in range(out.shape[0]):
        for j in range(n):
            out[i, j] = np.int64(np.floor((prod[i, j] * 256.0 + prod[i, n + j] + offset[j]) * mul[j] + add[j]))


@_njit(cache=True, nogil=True)
def combine_planes(prod, offset, out):
    n = out.shape[1]
    for i in range(out.shape[0]):
        for j in range(n):
            out[i, j] = prod[i, j] * 256.0 + prod[i, n + j] + offset[j]


@_njit(cache=True, nogil=True)
def small_product(a, shift, w, colsum, out):
    """``_Int8Layer.__call__``'s products for a few rows, in the form its callers combine: hi = 0, lo = the sum of
    (a + shift - 128) * w, as sum((a + shift) * w) - colsum, skipping zero inputs (most pixels, many activations).
    ``w``: int16 (in, out); ``colsum``: 128 * the column sums; exact in int32 (see ``_Int8Layer``)."""
    n = w.shape[1]
    acc = np.empty(n, np.int32)
    for i in range(a.shape[0]):
        acc[:] = 0
        for k in range(w.shape[0]):
            x = np.int32(a[i, k] + shift)
            if x != 0:
                for j in range(n):
                    acc[j] += x * np.int32(w[k, j])
        for j in range(n):
            out[i, j] = 0
            out[i, n + j] = acc[j] - colsum[j]
