"""The codecs the built-in models build from their networks' integer outputs (shared by every plugin here).

Each is built in one pass over the outputs (``bbarc.kernels``' heads), with the same integers as building a
``LogisticMixture`` from slices of them: the coder runs one per network call, over every lane coded in lockstep.
While the light kernels are in use (``bbarc.kernel_choice``: decoding a few items) they are built from slices,
which needs no numba.
"""
from __future__ import annotations

import numpy as np

from bbarc import fixedpoint as fp
from bbarc import kernels
from bbarc.codecs import Grid, LogisticMixture
from bbarc.errors import CodingError
from bbarc.kernel_choice import compiled_now

MEAN_LIMIT = 1 << 30  # as LogisticMixture checks


def _arrays(n: int, k: int) -> tuple[np.ndarray, ...]:
    return tuple(np.empty((n, k), np.int64) for _ in range(4))


def _checked(error: int) -> None:
    if error:
        raise CodingError("mixture means must lie within +-2**30 (fixed point); the model produced larger ones")


def latent_codec(out: np.ndarray, log_scale_min: float, bits: int, prec: int, floor: bool) -> LogisticMixture:
    """A logistic per latent value on the 2**bits equal-mass bins, from outputs (B, 2C, ...): C means, then C
    log-scales along axis 1. ``log_scale_min`` (natural log, as trained) clips the log-scales from below."""
    low = int(np.floor(log_scale_min * fp.LOG_SCALE_STEP))
    if not compiled_now():  # light kernels in use: build it from slices (the same integers, no numba)
        c = out.shape[1] // 2
        return LogisticMixture(Grid.latent(bits), out[:, :c].reshape(-1), np.maximum(out[:, c:], low).reshape(-1), 1,
                               prec, floor=floor)
    rows = np.ascontiguousarray(np.asarray(out, np.int64).reshape(len(out), -1))  # (B, 2C, ...) -> rows of means
    parts = _arrays(rows.shape[1] // 2 * len(rows), 1)
    _checked(kernels.latent_head(rows, low, fp.inverse_scale_table(), fp.LOG_SCALE_MIN, MEAN_LIMIT, *parts))
    return LogisticMixture.prepared(Grid.latent(bits), *parts, prec, floor=floor)


def pixel_codec(params: np.ndarray, mixtures: int, log_scale_min: float, prec: int) -> LogisticMixture:
    """A discretised logistic mixture per 8-bit value, from rows (n, 3K): K mixture logits, K means, K log-scales.
    The networks were trained on pixels scaled by 1/127.5, so ``log_scale_min`` is shifted back to pixel units."""
    k = mixtures
    params = np.ascontiguousarray(np.asarray(params, np.int64).reshape(-1, 3 * k))
    low = int(np.floor((log_scale_min + np.log(127.5)) * fp.LOG_SCALE_STEP))
    if not compiled_now():  # light kernels in use: build it from slices (the same integers, no numba)
        return LogisticMixture(Grid.levels(256), params[:, k : 2 * k], np.maximum(params[:, 2 * k :], low),
                               fp.mixture_weights(params[:, :k]), prec)
    parts = _arrays(len(params), k)
    _checked(kernels.pixel_head(params, k, low, fp.weight_table(), fp.inverse_scale_table(), fp.LOG_SCALE_MIN,
                                MEAN_LIMIT, *parts))
    return LogisticMixture.prepared(Grid.levels(256), *parts, prec)


def bernoulli_codec(logits: np.ndarray, prec: int, bound: float = np.inf) -> LogisticMixture:
    """A Bernoulli(sigmoid(logit)) per value: a logistic of mean ``logit`` and scale 1 on the binary grid.
    ``bound``: a proven bound on |logit| (``IntMLP.affine_bound``); the logits are checked only if it is over the
    codec's limit."""
    if not compiled_now():  # light kernels in use: the general constructor checks the means (no numba)
        return LogisticMixture(Grid.binary(), np.asarray(logits, np.int64).reshape(-1), 0, 1, prec)
    mean = np.ascontiguousarray(np.asarray(logits, np.int64).reshape(-1, 1))
    if bound > MEAN_LIMIT:
        _checked(kernels.check_means(mean, MEAN_LIMIT))
    log_scale, weights, inv = _unit_scale(len(mean))
    return LogisticMixture.prepared(Grid.binary(), mean, log_scale, weights, inv, prec)


_units: list[tuple[np.ndarray, ...]] = []


def _unit_scale(n: int) -> tuple[np.ndarray, ...]:
    """(log-scale 0, weight 1, its inverse scale) for ``n`` rows: read-only views of arrays kept for the largest
    ``n`` so far (the coder only reads them)."""
    if not _units or len(_units[0][0]) < n:
        inv = fp.inverse_scale_table()[-fp.LOG_SCALE_MIN]
        arrays = (np.zeros((n, 1), np.int64), np.ones((n, 1), np.int64), np.full((n, 1), inv, np.int64))
        for a in arrays:
            a.setflags(write=False)
        _units[:] = [arrays]
    return tuple(a[:n] for a in _units[0])
