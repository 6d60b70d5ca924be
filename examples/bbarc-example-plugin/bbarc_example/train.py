"""Fit the mixture of Bernoulli images by EM and write the integer weights file the plugin ships.

    python -m bbarc_example.train bbarc_example/weights/bernoulli-mixture-8x8.npz

Trains on the first 800 of the 8x8 sample items (``bbarc_example.data``), in float64 numpy: training needs no
exactness, only the exported integer tables do. A new file is a new config (its sha256): keep the old file in
``plugin.FILES`` so that archives written with it still decode.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bbarc import fixedpoint as fp
from bbarc_example.data import sample_items
from bbarc_example.plugin import COMPONENTS

MAX_LOGIT = 7.0  # no pixel is certain: every value keeps a frequency well above the codec's floor


def fit(x: np.ndarray, iterations: int = 60, seed: int = 0) -> np.ndarray:
    """EM for a mixture of Bernoullis with equal mixing weights (the chain's uniform prior): (K, D) P(pixel = 1)."""
    rng = np.random.default_rng(seed)
    x = x.reshape(len(x), -1).astype(np.float64)
    theta = np.clip(x[rng.choice(len(x), COMPONENTS, replace=False)] * 0.5 + 0.25, 0.05, 0.95)
    for _ in range(iterations):
        log_p = x @ np.log(theta).T + (1 - x) @ np.log1p(-theta).T
        resp = np.exp(log_p - log_p.max(axis=1, keepdims=True))
        resp /= resp.sum(axis=1, keepdims=True)
        theta = (resp.T @ x + 1) / (resp.sum(axis=0)[:, None] + 2)  # a Beta(2, 2) prior keeps theta off 0 and 1
    return theta


def tables(theta: np.ndarray) -> dict[str, np.ndarray]:
    """The integer tables of ``bbarc_example.plugin`` from P(pixel = 1)."""
    logit = np.clip(np.log(theta) - np.log1p(-theta), -MAX_LOGIT, MAX_LOGIT)
    logits = np.round(logit * (1 << fp.POS_BITS)).astype(np.int64)
    exact = logits / (1 << fp.POS_BITS)  # the log-likelihoods of the logits the coder will use
    log_one, log_zero = -np.logaddexp(0, -exact), -np.logaddexp(0, exact)
    loglik = np.round(np.stack([log_zero, log_one]) * fp.WEIGHT_LOGIT_STEP).astype(np.int64)
    return dict(logits=logits, loglik=loglik)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--iterations", type=int, default=60)
    args = ap.parse_args()
    theta = fit(sample_items()[:800], args.iterations)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as f:
        np.savez_compressed(f, **tables(theta))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
