"""Integer-exact MLP inference in numpy.

Weights are integers (|w| < 2**15), activations integers in [0, act_max], fan-in <= 2**10: every product and every
partial sum of a layer is an integer below 2**53, so a float64 matrix product is exact whatever the BLAS, the
summation order, the batch size or the thread count. A layer whose rows also satisfy
``sum(|w|) * (largest input) + |b| < 2**24`` is computed in float32 instead (twice as fast): every partial sum is
then an integer below 2**24, exact in float32, so the result is the same integers. Weight files exported with
``--float32`` are quantised to meet that bound. Rescaling between layers is one IEEE float64 multiply and a floor
per value (correctly rounded, so identical everywhere). The result: the same integers on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plugins.weightfiles import read_weights, write_weights

ACT_MAX = float((1 << 16) - 1)
WEIGHT_MAX = (1 << 15) - 1
MAX_FAN_IN = 1 << 10
F32_EXACT = float(1 << 24)  # integers below this are exact in float32, and so is every partial sum


@dataclass(frozen=True, eq=False)
class IntMLP:
    """Linear layers with ReLU between them; returns the last layer's exact integer accumulators (float64)."""

    weights: tuple[np.ndarray, ...]  # float64, integer-valued, (out, in)
    biases: tuple[np.ndarray, ...]  # float64, integer-valued, (out,)
    rescale: tuple[np.ndarray, ...]  # float64 per-row multipliers taking a hidden accumulator to the next input
    act_max: tuple[float, ...] = ()  # per hidden layer, the clip of its activations (default ACT_MAX)
    in_max: float = np.inf  # bound on |input| of the first layer, if known (unknown: float64 there)

    def __post_init__(self):
        for w in self.weights:
            if w.shape[1] > MAX_FAN_IN or np.abs(w).max() > WEIGHT_MAX or (w != np.round(w)).any():
                raise ValueError("IntMLP weights must be integers below 2**15 with fan-in <= 1024 (exactness bound)")
        act_max = tuple(self.act_max) or (ACT_MAX,) * (len(self.weights) - 1)
        if len(act_max) != len(self.weights) - 1 or max(act_max, default=0) > ACT_MAX:
            raise ValueError(f"IntMLP needs one activation clip <= {ACT_MAX:.0f} per hidden layer")
        object.__setattr__(self, "act_max", act_max)
        bounds = (self.in_max, *act_max)
        exact32 = [bool((np.abs(w).sum(axis=1) * bound + np.abs(b) < F32_EXACT).all())
                   for w, b, bound in zip(self.weights, self.biases, bounds)]
        object.__setattr__(self, "_dtypes", tuple(np.float32 if e else np.float64 for e in exact32))
        object.__setattr__(self, "_w", tuple(w.astype(dt).T for w, dt in zip(self.weights, self._dtypes)))
        object.__setattr__(self, "_b", tuple(b.astype(dt) for b, dt in zip(self.biases, self._dtypes)))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        a = np.asarray(x)
        last = len(self.weights) - 1
        for i, (wt, b, dt) in enumerate(zip(self._w, self._b, self._dtypes)):
            acc = a.astype(dt, copy=False) @ wt
            acc += b
            if i < last:
                a = np.maximum(acc, 0, dtype=np.float64)
                a *= self.rescale[i]
                np.floor(a, out=a)
                np.minimum(a, self.act_max[i], out=a)
        return acc.astype(np.float64, copy=False)


def affine_floor(acc: np.ndarray, mul: np.ndarray, add: np.ndarray) -> np.ndarray:
    """floor(acc * mul + add) as int64: two correctly rounded IEEE operations, so exact and reproducible."""
    return np.floor(acc * mul + add).astype(np.int64)


def save_weights(path: Path, nets: dict[str, IntMLP], extra: dict[str, np.ndarray], config: dict) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, net in nets.items():
        for i, (w, b) in enumerate(zip(net.weights, net.biases)):
            arrays[f"{name}.w{i}"] = w.astype(np.int16)
            arrays[f"{name}.b{i}"] = b.astype(np.int64)
        for i, r in enumerate(net.rescale):
            arrays[f"{name}.r{i}"] = r.astype(np.float64)
            arrays[f"{name}.m{i}"] = np.float64(net.act_max[i])
        if np.isfinite(net.in_max):
            arrays[f"{name}.inmax"] = np.float64(net.in_max)
    write_weights(path, {**arrays, **extra}, config)


def load_weights(path) -> tuple[dict, dict[str, IntMLP], dict[str, np.ndarray], str]:
    """Returns (config, networks, other arrays, sha256 of the file)."""
    config, arrays, digest = read_weights(path)
    nets = {}
    for name in sorted({k.split(".")[0] for k in arrays if ".w" in k}):
        n = sum(1 for k in arrays if k.startswith(f"{name}.w"))
        nets[name] = IntMLP(
            tuple(arrays.pop(f"{name}.w{i}").astype(np.float64) for i in range(n)),
            tuple(arrays.pop(f"{name}.b{i}").astype(np.float64) for i in range(n)),
            tuple(arrays.pop(f"{name}.r{i}") for i in range(n - 1)),
            tuple(float(arrays.pop(f"{name}.m{i}", ACT_MAX)) for i in range(n - 1)),
            float(arrays.pop(f"{name}.inmax", np.inf)),
        )
    return config, nets, arrays, digest
