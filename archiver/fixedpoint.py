"""Exact lookup tables: every probability the coder uses is computed from these with integer arithmetic only.

Floating-point results drift with batch size, thread count and machine, and the decoder must rebuild the
encoder's frequencies bit for bit. So the tables are generated with Python's ``decimal`` module, whose ``exp`` and
``ln`` are correctly rounded, and then rounded to integers: the same integers on every machine. The constants
below are part of archive format v1 (they are written into each archive's metadata) and must never change for
a given ``SCHEME``; a new scheme gets a new name.

Computing them takes a good fraction of a second, so they are computed once and shipped (``tables/``, written
by ``tools/make_tables.py``), pinned by ``PINNED_SHA256``; the tests recompute them with ``decimal``. A shipped
file that is missing or does not match its digest is ignored, and the tables computed as before: the same
integers, only slower.
"""
from __future__ import annotations

import hashlib
import os
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

PINNED_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tables", f"{SCHEME}.npz")
PINNED_BITS = (12,)  # the latent grids shipped precomputed (the built-in models'); other sizes are computed
# sha256 of the pinned tables (``tables_digest``): they are part of the archive format and never change
PINNED_SHA256 = "6614ba952863f5583a05bfaf1304eafa4e3729c4f00e1b737a134f725d05efc1"


def _exp(x: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 50
        return x.exp()


def _round(x: Decimal) -> int:
    return int(x.to_integral_value())  # decimal's default rounding is half-even: deterministic


def _sigmoid_table() -> np.ndarray:
    """sigmoid(j / 64 - 32) * 2**24 for j = 0 .. 64*64, as int64."""
    n = 2 * SIG_RANGE << SIG_STEP_BITS
    one = Decimal(1 << SIG_BITS)
    with localcontext() as ctx:
        ctx.prec = 50
        vals = [_round(one / (1 + _exp(-(Decimal(j) / (1 << SIG_STEP_BITS) - SIG_RANGE)))) for j in range(n + 1)]
    table = np.array(vals, dtype=np.int64)
    table.setflags(write=False)
    return table


def _inverse_scale_table() -> np.ndarray:
    """exp(-k / 32) * 2**24 for k = LOG_SCALE_MIN .. LOG_SCALE_MAX, as int64 (index with k - LOG_SCALE_MIN)."""
    vals = [
        _round(_exp(Decimal(-k) / LOG_SCALE_STEP) * (1 << INV_SCALE_BITS)) for k in range(LOG_SCALE_MIN, LOG_SCALE_MAX + 1)
    ]
    table = np.array(vals, dtype=np.int64)
    table.setflags(write=False)
    return table


def _weight_table() -> np.ndarray:
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


def _logistic_bin_edges(bits: int) -> np.ndarray:
    return _fixed_logits(range(1, 1 << bits), 1 << bits)


def _logistic_bin_centres(bits: int) -> np.ndarray:
    return _fixed_logits(range(1, 2 << bits, 2), 2 << bits)


def compute_tables() -> dict[str, np.ndarray]:
    """The pinned tables, computed with ``decimal`` (what ``tools/make_tables.py`` writes and the tests check)."""
    tables = dict(sigmoid=_sigmoid_table(), inverse_scale=_inverse_scale_table(), weight=_weight_table())
    for bits in PINNED_BITS:
        tables[f"bin_edges_{bits}"] = _logistic_bin_edges(bits)
        tables[f"bin_centres_{bits}"] = _logistic_bin_centres(bits)
    return tables


def tables_digest(tables: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tables):
        h.update(name.encode() + b"\0" + np.ascontiguousarray(tables[name], dtype="<i8").tobytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def _pinned() -> dict[str, np.ndarray]:
    """The shipped tables, read-only int64; empty if the file is missing or not the pinned one."""
    try:
        with np.load(PINNED_FILE, allow_pickle=False) as f:
            tables = {name: f[name].astype(np.int64) for name in f.files}
    except (OSError, ValueError):
        return {}
    if tables_digest(tables) != PINNED_SHA256:
        return {}
    for table in tables.values():
        table.setflags(write=False)
    return tables


def _table(name: str, compute, *args) -> np.ndarray:
    table = _pinned().get(name)
    return compute(*args) if table is None else table


@lru_cache(maxsize=None)
def sigmoid_table() -> np.ndarray:
    """sigmoid(j / 64 - 32) * 2**24 for j = 0 .. 64*64, as int64."""
    return _table("sigmoid", _sigmoid_table)


@lru_cache(maxsize=None)
def inverse_scale_table() -> np.ndarray:
    """exp(-k / 32) * 2**24 for k = LOG_SCALE_MIN .. LOG_SCALE_MAX, as int64 (index with k - LOG_SCALE_MIN)."""
    return _table("inverse_scale", _inverse_scale_table)


@lru_cache(maxsize=None)
def weight_table() -> np.ndarray:
    """exp(-u / 16) * 2**12 for u = 0 .. until it rounds to 0: mixture weight from a logit's distance to the max."""
    return _table("weight", _weight_table)


@lru_cache(maxsize=None)
def logistic_bin_edges(bits: int) -> np.ndarray:
    """Edges of the 2**bits bins of equal mass under the standard logistic: logit(k / 2**bits), k = 1 .. 2**bits - 1."""
    return _table(f"bin_edges_{bits}", _logistic_bin_edges, bits)


@lru_cache(maxsize=None)
def logistic_bin_centres(bits: int) -> np.ndarray:
    """The prior median of each bin, logit((k + 1/2) / 2**bits): the value a network sees for latent bin k."""
    return _table(f"bin_centres_{bits}", _logistic_bin_centres, bits)


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
