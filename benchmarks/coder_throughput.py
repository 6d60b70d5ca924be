"""Throughput of bbarc's rANS core (numba kernels) per CPU-second, next to constriction's AnsCoder if installed.

    python benchmarks/coder_throughput.py [--symbols 2000000]

bbarc's codecs run through their lane form (``push_lanes``/``pop_lanes``, the one the chain uses), here on one
lane holding all the symbols. bbarc's mixture codecs evaluate the integer CDF inside the coding loop (only the
values the coder needs); the constriction rows build a 256-entry categorical table per symbol in numpy first, as
a model would have to.
"""
from __future__ import annotations

import argparse

import numpy as np

from bbarc import fixedpoint as fp
from bbarc.ans import AnsLanes
from bbarc.bench import measure
from bbarc.codecs import Grid, LogisticMixture, Uniform

ONE = np.zeros(1, dtype=np.int64)  # the lane ids: lane 0 only


def cpu(fn):
    """(fn(), CPU seconds)."""
    out, _, seconds = measure(fn)
    return out, seconds


def push_pop(codec, symbols: np.ndarray) -> tuple[float, float]:
    """CPU seconds to push ``symbols`` onto one lane and to pop them off a copy of the message."""
    lanes = AnsLanes(1, len(symbols) + 16)
    _, t_push = cpu(lambda: codec.push_lanes(lanes, ONE, symbols[None]))
    again = AnsLanes.from_messages([lanes.message(0)])
    (out, status), t_pop = cpu(lambda: codec.pop_lanes(again, ONE))
    if (status >= 0).any() or not np.array_equal(out[0], symbols):
        raise SystemExit(f"{codec!r} did not pop what it pushed")
    return t_push, t_pop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=2_000_000)
    n = ap.parse_args().symbols
    rng = np.random.default_rng(0)
    rows = []
    for k in (1, 2):
        mean = rng.integers(0, 256 << 16, (n, k))
        codec = LogisticMixture(Grid.levels(256), mean, rng.integers(-40, 100, (n, k)),
                                fp.mixture_weights(rng.integers(-20, 20, (n, k))), 20)
        symbols = np.clip((mean[:, 0] >> 16) + rng.integers(-3, 4, n), 0, 255)
        push_pop(codec.take(slice(0, 1000)), symbols[:1000])  # compiles the kernels
        t_push, t_pop = push_pop(codec, symbols)
        rows.append((f"bbarc logistic mixture K={k}, 256 symbols", n / t_push, n / t_pop))
    push_pop(Uniform(1000, 12), rng.integers(0, 4096, 1000))
    t_push, t_pop = push_pop(Uniform(n, 12), rng.integers(0, 4096, n))
    rows.append(("bbarc uniform 12 bits", n / t_push, n / t_pop))
    try:
        import constriction

        m = min(n, 200_000)
        probs = rng.dirichlet(np.ones(256), size=m).astype(np.float32)
        symbols = np.array([rng.choice(256, p=p / p.sum()) for p in probs[:1000]] * (m // 1000), dtype=np.int32)
        model = constriction.stream.model.Categorical(perfect=False)
        coder = constriction.stream.stack.AnsCoder()
        _, t_push = cpu(lambda: coder.encode_reverse(symbols, model, probs))
        dec = constriction.stream.stack.AnsCoder(coder.get_compressed())
        out, t_pop = cpu(lambda: dec.decode(model, probs))
        if not np.array_equal(out, symbols):
            raise SystemExit("constriction did not decode what it encoded")
        rows.append(("constriction AnsCoder categorical, 256-entry tables given", m / t_push, m / t_pop))
    except ImportError:
        rows.append(("constriction not installed", float("nan"), float("nan")))
    print(f"{'coder':58s} {'push Msym/CPU-s':>16s} {'pop Msym/CPU-s':>15s}")
    for name, a, b in rows:
        print(f"{name:58s} {a / 1e6:16.2f} {b / 1e6:15.2f}")


if __name__ == "__main__":
    main()
