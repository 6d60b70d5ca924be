"""One-pass compiled forms of ``bbarc.plugins.intnet``'s requantise and combine steps, for batches of
``TORCH_MIN_BATCH`` rows or more (bulk coding, which loads numba anyway): numpy's forms take several passes over
the array. The float64 operations are the same, value by value, so the integers are too (tests/test_intnet.py
runs both)."""
from __future__ import annotations

from bbarc.jit import KernelGroup
import numpy as np

_njit = KernelGroup(globals())  # numba.njit on first call (bbarc.jit), with its start-up costs trimmed


@_njit(cache=True, nogil=True)
def requantise(acc, rescale, act_max, to_int8, out):
    """min(floor(max(acc, 0) * rescale), act_max) per value; with ``to_int8`` stored minus 128."""
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            v = np.floor(max(acc[i, j], 0.0) * rescale[j])
            v = min(v, act_max)
            out[i, j] = v - 128.0 if to_int8 else v


@_njit(cache=True, nogil=True)
def combine(hi, lo, offset, out):
    """hi * 256 + lo + offset per value (int32 planes' sums to float64: exact)."""
    for i in range(hi.shape[0]):
        for j in range(hi.shape[1]):
            out[i, j] = hi[i, j] * 256.0 + lo[i, j] + offset[j]
