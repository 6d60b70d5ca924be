"""Exact lookup tables: every probability the coder uses is computed from these with integer arithmetic only.

Floating-point results drift with batch size, thread count and machine, and the decoder must rebuild the
encoder's frequencies bit for bit. So the tables are generated with Python's ``decimal`` module, whose ``exp`` and
``ln`` are correctly rounded, and then rounded to integers: the same integers on every machine. The constants
below are part of archive format v1 (they are written into each archive's metadata) and must never change for
a given ``SCHEME``; a new scheme gets a new name.
"""
from __future__ import annotations

from decimal import Decimal, localcontext
from functools import lru_cache

import numpy as np

SCHEME = "logistic-v1"
POS_BITS = 16  # positions (bin edges, means, logits) are fixed point with 16 fractional bits
SIG_BITS = 24  # sigmoid values are integers in [0, 2**24]
SIG_STEP_BITS = 6  # table step 1/64 in the sigmoid's argument, linear interpolation in between
SIG_RANGE = 32  # the table covers arguments in [-32, 32]; beyond that the sigmoid is 0 or 1 at 24 bits
INV_SCALE_BITS = 24  # inverse scales are integers in units of 2**-24
LOG_SCALE_STEP = 32  # log-scales are integers in units of 1/32 nat
LOG_SCALE_MIN, LOG_SCALE_MAX = -8 * LOG_SCALE_STEP, 12 * LOG_SCALE_STEP  # scales from e**-8 to e**12
WEIGHT_BITS = 12  # mixture weights are integers in [0, 2**12]
WEIGHT_LOGIT_STEP = 16  # mixture logits are integers in units of 1/16 nat
MAX_COMPONENTS = 16


def _exp(x: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 50
        return x.exp()


def _round(x: Decimal) -> int:
    return int(x.to_integral_value())  # decimal's default rounding is half-even: deterministic


@lru_cache(maxsize=None)
def sigmoid_table() -> np.ndarray:
    """sigmoid(j / 64 - 32) * 2**24 for j = 0 .. 64*64, as int64."""
    n = 2 * SIG_RANGE << SIG_STEP_BITS
    one = Decimal(1 << SIG_BITS)
    with localcontext() as ctx:
        ctx.prec = 50
        vals = [_round(one / (1 + _exp(-(Decimal(j) / (1 << SIG_STEP_BITS) - SIG_RANGE)))) for j in range(n + 1)]
    table = np.array(vals, dtype=np.int64)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=None)
def inverse_scale_table() -> np.ndarray:
    """exp(-k / 32) * 2**24 for k = LOG_SCALE_MIN .. LOG_SCALE_MAX, as int64 (index with k - LOG_SCALE_MIN)."""
    vals = [
        _round(_exp(Decimal(-k) / LOG_SCALE_STEP) * (1 << INV_SCALE_BITS)) for k in range(LOG_SCALE_MIN, LOG_SCALE_MAX + 1)
    ]
    table = np.array(vals, dtype=np.int64)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=None)
def weight_table() -> np.ndarray:
    """exp(-u / 16) * 2**12 for u = 0 .. until it rounds to 0: mixture weight from a logit's distance to the max."""
    vals = []
    u = 0
    while True:
        v = _round(_exp(Decimal(-u) / WEIGHT_LOGIT_STEP) * (1 << WEIGHT_BITS))
        if v == 0:
            break
        vals.append(v)
        u += 1
    table = np.array(vals, dtype=np.int64)
    table.setflags(write=False)
    return table


def mixture_weights(logits: np.ndarray) -> np.ndarray:
    """Integer softmax: logits (..., K) in units of 1/16 nat -> weights in [0, 2**12], the largest exactly 2**12."""
    from . import kernels_py as kernels  # numpy, vectorised (no numba); not at the top: it imports the constants above

    logits = np.asarray(logits, dtype=np.int64)
    flat = np.ascontiguousarray(logits.reshape(-1, logits.shape[-1]))
    out = np.empty(flat.shape, dtype=np.int64)
    kernels.mixture_weights(flat, weight_table(), out)
    return out.reshape(logits.shape)


def _fixed_logits(numerators: range, denominator: int) -> np.ndarray:
    """logit(k / denominator) for each k, in fixed point, read-only int64."""
    scale = Decimal(1 << POS_BITS)
    with localcontext() as ctx:
        ctx.prec = 50
        vals = [_round((Decimal(k) / (denominator - k)).ln() * scale) for k in numerators]
    out = np.array(vals, dtype=np.int64)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=None)
def logistic_bin_edges(bits: int) -> np.ndarray:
    """Edges of the 2**bits bins of equal mass under the standard logistic: logit(k / 2**bits), k = 1 .. 2**bits - 1."""
    return _fixed_logits(range(1, 1 << bits), 1 << bits)


@lru_cache(maxsize=None)
def logistic_bin_centres(bits: int) -> np.ndarray:
    """The prior median of each bin, logit((k + 1/2) / 2**bits): the value a network sees for latent bin k."""
    return _fixed_logits(range(1, 2 << bits, 2), 2 << bits)


@lru_cache(maxsize=None)
def level_edges(levels: int) -> np.ndarray:
    """Edges between integer levels 0 .. levels-1 (at k - 1/2), fixed point: the discretised-logistic likelihood."""
    edges = (np.arange(1, levels, dtype=np.int64) << POS_BITS) - (1 << (POS_BITS - 1))
    edges.setflags(write=False)
    return edges


def scheme_parameters() -> dict:
    """Everything that fixes the integer arithmetic; stored in every archive."""
    return dict(
        scheme=SCHEME, pos_bits=POS_BITS, sig_bits=SIG_BITS, sig_step_bits=SIG_STEP_BITS, sig_range=SIG_RANGE,
        inv_scale_bits=INV_SCALE_BITS, log_scale_step=LOG_SCALE_STEP, log_scale_min=LOG_SCALE_MIN,
        log_scale_max=LOG_SCALE_MAX, weight_bits=WEIGHT_BITS, weight_logit_step=WEIGHT_LOGIT_STEP,
    )
