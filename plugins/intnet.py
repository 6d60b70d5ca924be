"""Integer-exact MLP inference.

Weights and activations are integers, so a layer's result is an exact integer however it is computed; two
backends compute it:

* float64 matrix products (numpy/BLAS): weights |w| < 2**15, inputs < 2**16 (or the decoder's fixed-point
  latents), fan-in <= 2**10, so every product and partial sum is an integer below 2**53 and exact whatever the
  summation order, batch size or thread count.
* int8 matrix products with int32 accumulation (``torch._int_mm``, VNNI on x86): for layers whose inputs are
  integers in [0, 255] and whose weights satisfy |w| <= 2**14 - 1. Inputs go in with an offset of -128, weights
  as two int8 planes (w = 256 * hi + lo); integer sums cannot round, and they stay far below 2**31. About 8x
  faster than float32 here; used when torch is installed, else the float64 backend gives the same integers.

Rescaling between layers is one IEEE float64 multiply and a floor per value (correctly rounded, so identical
everywhere), then a clip at the layer's ``act_max``. The result: the same integers on every machine.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from bbarc.errors import CodingError, ModelError
from bbarc.execution import refresh_thread_cap
from bbarc.plugins.weightfiles import read_weights, write_weights

ACT_MAX = float((1 << 16) - 1)
WEIGHT_MAX = (1 << 15) - 1
MAX_FAN_IN = 1 << 10
INT8_IN_MAX = 255.0  # int8 layers take inputs in [0, 255]
INT8_WEIGHT_MAX = (1 << 14) - 1  # and weights that split into two int8 planes
SMALL_BATCH = 4  # rows up to which int8 layers run a compiled loop rather than _int_mm (one-item decoding)


@functools.lru_cache(maxsize=1)
def _torch():
    """torch, if its int8 product works here (checked once against exact integer arithmetic), else None."""
    try:
        import torch

        rng = np.random.default_rng(0)
        a, b = rng.integers(-128, 128, (3, 40)), rng.integers(-128, 128, (40, 24))
        # and the extremes, whose sums overflow a build that accumulates in 16 bits or saturates
        a, b = np.vstack([a, np.full(40, -128), np.full(40, 127)]), np.hstack([b, np.full((40, 2), -128)])
        got = torch._int_mm(torch.from_numpy(a.astype(np.int8)), torch.from_numpy(b.astype(np.int8))).numpy()
        if not np.array_equal(got, a @ b):
            return None
    except Exception:  # no torch, or no int8 product on this build or CPU: coding still works, in float64
        return None
    refresh_thread_cap()  # the networks are often built inside a coding call: cap torch's threads from now on
    return torch


class _Float64Layer:
    takes_int8 = False

    def __init__(self, w: np.ndarray, b: np.ndarray):
        self.wt, self.b = w.astype(np.float64).T, b.astype(np.float64)
        self.n_out = w.shape[0]

    def __call__(self, a: np.ndarray, offset: bool = False) -> np.ndarray:
        acc = np.asarray(a, dtype=np.float64) @ self.wt
        acc += self.b
        return acc

    def combine(self, acc: np.ndarray) -> np.ndarray:
        return acc


@numba.njit(cache=True, nogil=True)
def _requantise(acc, rescale, act_max, to_int8, out):
    """min(floor(max(acc, 0) * rescale), act_max) per value (the float64 operations of the numpy expression, in
    one pass); with ``to_int8`` stored minus 128, the input form of an int8 layer."""
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            v = np.floor(max(acc[i, j], 0.0) * rescale[j])
            v = min(v, act_max)
            out[i, j] = v - 128.0 if to_int8 else v


@numba.njit(cache=True, nogil=True)
def _requantise_planes(prod, offset, rescale, act_max, to_int8, out):
    """``_requantise`` of an int8 layer's accumulators, combined from its products on the way
    (``_Int8Layer.__call__``): hi * 256 + lo + offset, the float64 sum of ``combine_planes``, in the same pass."""
    n = out.shape[1]
    for i in range(out.shape[0]):
        for j in range(n):
            v = np.floor(max(prod[i, j] * 256.0 + prod[i, n + j] + offset[j], 0.0) * rescale[j])
            v = min(v, act_max)
            out[i, j] = v - 128.0 if to_int8 else v


@numba.njit(cache=True, nogil=True)
def _affine_planes(prod, offset, mul, add, out):
    """``affine_floor`` of an int8 layer's accumulators, combined from its products in the same pass."""
    n = out.shape[1]
    for i in range(out.shape[0]):
        for j in range(n):
            out[i, j] = np.int64(np.floor((prod[i, j] * 256.0 + prod[i, n + j] + offset[j]) * mul[j] + add[j]))


@numba.njit(cache=True, nogil=True)
def _combine_planes(prod, offset, out):
    n = out.shape[1]
    for i in range(out.shape[0]):
        for j in range(n):
            out[i, j] = prod[i, j] * 256.0 + prod[i, n + j] + offset[j]


@numba.njit(cache=True, nogil=True)
def _small_product(a, shift, w, colsum, out):
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


class _Int8Layer:
    """An int8 layer (see the module docstring). Up to ``SMALL_BATCH`` rows, a compiled loop over int16 weights
    computes the same integer sums faster than ``_int_mm``, whose cost at one row is nearly that of dozens:
    sum((a - 128) * w) fits int32 for fan-in <= 1024, and sum(a * w) does when 255 * sum(|w|) of every column is
    below 2**31 (checked here; else the small path is not used)."""

    takes_int8 = True

    def __init__(self, torch, w: np.ndarray, b: np.ndarray):
        w = w.astype(np.int64)
        lo = (w + 128) % 256 - 128
        hi = (w - lo) // 256
        self.torch, self.n_out = torch, w.shape[0]
        # Both planes side by side, (in, 2 * out) in _int_mm's fast layout: one product per call, not two.
        self.planes = torch.from_numpy(np.ascontiguousarray(np.hstack([hi.T, lo.T]), dtype=np.int8))
        self.offset = (128.0 * w.sum(axis=1) + b).astype(np.float64)  # undoes the -128 input offset; exact
        self.small = None
        if INT8_IN_MAX * np.abs(w).sum(axis=1).max() < 2.0**31:
            self.small = (np.ascontiguousarray(w.T, dtype=np.int16), (128 * w.sum(axis=1)).astype(np.int32))

    def __call__(self, a: np.ndarray, offset: bool = False) -> np.ndarray:
        """The products of ``a`` with both weight planes, int32 (B, 2 * out): hi's, then lo's (the accumulator is
        ``hi * 256 + lo + self.offset``: ``combine``). ``a``: integers in [0, 255]; with ``offset``, int8 values
        already minus 128 (from ``_requantise``)."""
        a = np.asarray(a)
        if not offset:
            if a.size and (a.min() < 0 or a.max() > INT8_IN_MAX):
                raise CodingError(f"int8 layer inputs must lie in [0, 255], got [{a.min()}, {a.max()}]")
        if len(a) <= SMALL_BATCH and self.small is not None:
            out = np.empty((len(a), 2 * self.n_out), np.int32)
            _small_product(a, 128 if offset else 0, *self.small, out)
            return out
        if not offset:
            a = (a - 128).astype(np.int8)
        return self.torch._int_mm(self.torch.from_numpy(a), self.planes).numpy()

    def combine(self, prod: np.ndarray) -> np.ndarray:
        """The layer's exact accumulators (float64) from ``__call__``'s products."""
        out = np.empty((len(prod), self.n_out), np.float64)
        _combine_planes(prod, self.offset, out)
        return out


def _load_small_product() -> None:
    """Load the small-batch product now, not in the first network call: numba's first compiled function in a
    process loads its BLAS registry (scipy's OpenBLAS, a thread pool of its own), and a coding call in progress
    must cap that pool too (``refresh_thread_cap``)."""
    a, w = np.zeros((1, 1), np.int8), np.zeros((1, 1), np.int16)
    _small_product(a, 0, w, np.zeros(1, np.int32), np.empty((1, 2), np.int32))
    refresh_thread_cap()


@dataclass(frozen=True, eq=False)
class IntMLP:
    """Linear layers with ReLU between them; returns the last layer's exact integer accumulators (float64)."""

    weights: tuple[np.ndarray, ...]  # float64, integer-valued, (out, in)
    biases: tuple[np.ndarray, ...]  # float64, integer-valued, (out,)
    rescale: tuple[np.ndarray, ...]  # float64 per-row multipliers taking a hidden accumulator to the next input
    act_max: tuple[float, ...] = ()  # per hidden layer, the clip of its activations (default ACT_MAX)
    in_max: float = np.inf  # the first layer's inputs are integers in [0, in_max] (inf: not known, any integers)
    int8: bool = True  # use the int8 backend where it applies (False: float64 throughout, for tests)

    def __post_init__(self):
        for w, b in zip(self.weights, self.biases):
            if w.shape[1] > MAX_FAN_IN or np.abs(w).max() > WEIGHT_MAX or (w != np.round(w)).any():
                raise ModelError("IntMLP weights must be integers below 2**15 with fan-in <= 1024 (exactness bound)")
            if (b != np.round(b)).any() or np.abs(b).max() >= 2.0**52:
                raise ModelError("IntMLP biases must be integers below 2**52 (exactness bound)")
        act_max = tuple(self.act_max) or (ACT_MAX,) * (len(self.weights) - 1)
        if (len(act_max) != len(self.weights) - 1 or any(a != int(a) or not 0 < a <= ACT_MAX for a in act_max)
                or not (self.in_max == np.inf or self.in_max == int(self.in_max) >= 0)):
            raise ModelError(f"IntMLP needs one integer activation clip in [1, {ACT_MAX:.0f}] per hidden layer and an "
                             "integer (or infinite) input bound")
        object.__setattr__(self, "act_max", act_max)
        torch = _torch() if self.int8 else None
        layers = []
        for w, b, bound in zip(self.weights, self.biases, (self.in_max, *act_max)):
            fits = bound <= INT8_IN_MAX and np.abs(w).max() <= INT8_WEIGHT_MAX
            layers.append(_Int8Layer(torch, w, b) if torch is not None and fits else _Float64Layer(w, b))
        object.__setattr__(self, "_layers", tuple(layers))
        if any(layer.takes_int8 and layer.small is not None for layer in layers):
            _load_small_product()


    @property
    def backends(self) -> tuple[str, ...]:
        return tuple("int8" if layer.takes_int8 else "float64" for layer in self._layers)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._layers[-1].combine(self._hidden(x))

    def affine_bound(self, mul: np.ndarray, add: np.ndarray) -> float:
        """An upper bound on ``|affine(x, mul, add)|`` over every input: the last layer's inputs lie in [0, its
        input clip], so |sum| <= sum(|w|) * clip + |b|; a relative margin covers the bound's own rounding, and 1
        the floor."""
        clip = self.act_max[-1] if len(self.weights) > 1 else self.in_max
        acc = np.abs(self.weights[-1]).sum(axis=1) * clip + np.abs(self.biases[-1])
        return float((np.abs(mul) * acc + np.abs(add)).max() * (1 + 1e-9) + 1)

    def affine(self, x: np.ndarray, mul: np.ndarray, add: np.ndarray) -> np.ndarray:
        """``affine_floor(self(x), mul, add)`` (one ``mul``, ``add`` per output), in one pass over the last
        layer's products."""
        prod, last = self._hidden(x), self._layers[-1]
        if not last.takes_int8:
            return affine_floor(prod, mul, add)
        out = np.empty((len(prod), last.n_out), np.int64)
        _affine_planes(prod, last.offset, np.ascontiguousarray(mul, np.float64), np.ascontiguousarray(add, np.float64),
                       out)
        return out

    def _hidden(self, x: np.ndarray) -> np.ndarray:
        """Every layer but the last's rescaling: what the last layer returns (its ``combine`` gives its sums)."""
        a, offset = np.asarray(x), False
        for i, layer in enumerate(self._layers):
            acc = layer(a, offset)
            if i + 1 < len(self._layers):
                to_int8 = self._layers[i + 1].takes_int8
                a = np.empty((len(acc), layer.n_out), np.int8 if to_int8 else np.float64)
                if layer.takes_int8:
                    _requantise_planes(acc, layer.offset, self.rescale[i], self.act_max[i], to_int8, a)
                else:
                    _requantise(acc, self.rescale[i], self.act_max[i], to_int8, a)
                offset = to_int8
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
            arrays[f"{name}.m{i}"] = np.float64(net.act_max[i])
        if np.isfinite(net.in_max):
            arrays[f"{name}.inmax"] = np.float64(net.in_max)
    write_weights(path, {**arrays, **extra}, config)


def load_weights(path) -> tuple[dict, dict[str, IntMLP], dict[str, np.ndarray], str]:
    """Returns (config, networks, other arrays, sha256 of the file)."""
    config, arrays, digest = read_weights(path)
    nets, extra = build_nets(arrays)
    return config, nets, extra, digest


def build_nets(arrays: dict[str, np.ndarray]) -> tuple[dict[str, IntMLP], dict[str, np.ndarray]]:
    """The networks stored in a weights file's arrays, and the arrays that are not part of them."""
    arrays = dict(arrays)
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
    return nets, arrays
