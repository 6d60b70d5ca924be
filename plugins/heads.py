"""The codecs the built-in models build from their networks' integer outputs (shared by every plugin here)."""
from __future__ import annotations

import numpy as np

from bbarc import fixedpoint as fp
from bbarc.codecs import Grid, LogisticMixture


def latent_codec(out: np.ndarray, log_scale_min: float, bits: int, prec: int, floor: bool) -> LogisticMixture:
    """A logistic per latent value on the 2**bits equal-mass bins, from outputs (B, 2C, ...): C means, then C
    log-scales along axis 1. ``log_scale_min`` (natural log, as trained) clips the log-scales from below."""
    c = out.shape[1] // 2
    low = int(np.floor(log_scale_min * fp.LOG_SCALE_STEP))
    return LogisticMixture(Grid.latent(bits), out[:, :c].reshape(-1), np.maximum(out[:, c:], low).reshape(-1), 1,
                           prec, floor=floor)


def pixel_codec(params: np.ndarray, mixtures: int, log_scale_min: float, prec: int) -> LogisticMixture:
    """A discretised logistic mixture per 8-bit value, from rows (n, 3K): K mixture logits, K means, K log-scales.
    The networks were trained on pixels scaled by 1/127.5, so ``log_scale_min`` is shifted back to pixel units."""
    k = mixtures
    params = params.reshape(-1, 3 * k)
    low = int(np.floor((log_scale_min + np.log(127.5)) * fp.LOG_SCALE_STEP))
    return LogisticMixture(Grid.levels(256), params[:, k : 2 * k], np.maximum(params[:, 2 * k :], low),
                           fp.mixture_weights(params[:, :k]), prec)
