"""Integer-exact MLP inference in numpy.

Weights are integers (|w| < 2**15), activations integers in [0, 2**16), fan-in <= 2**10: every product and every
partial sum of a layer is an integer below 2**53, so a float64 matrix product is exact whatever the BLAS, the
summation order, the batch size or the thread count. Rescaling between layers is one IEEE multiply and a floor
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


@dataclass(frozen=True, eq=False)
class IntMLP:
    """Linear layers with ReLU between them; returns the last layer's exact integer accumulators (float64)."""

    weights: tuple[np.ndarray, ...]  # float64, integer-valued, (out, in)
    biases: tuple[np.ndarray, ...]  # float64, integer-valued, (out,)
    rescale: tuple[np.ndarray, ...]  # float64 per-row multipliers taking a hidden accumulator to the next input

    def __post_init__(self):
        for w in self.weights:
            if w.shape[1] > MAX_FAN_IN or np.abs(w).max() > WEIGHT_MAX or (w != np.round(w)).any():
                raise ValueError("IntMLP weights must be integers below 2**15 with fan-in <= 1024 (exactness bound)")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            acc = a @ w.T + b
            if i < last:
                a = np.minimum(np.floor(np.maximum(acc, 0.0) * self.rescale[i]), ACT_MAX)
        return acc


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
        )
    return config, nets, arrays, digest
