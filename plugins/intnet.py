"""Integer-exact MLP inference.

Weights and activations are integers, so a layer's result is an exact integer however it is computed. Layers of
v1 weight files run as float64 products, exact because weights |w| < 2**15, inputs < 2**16 (or the decoder's
fixed-point latents) and fan-in <= 2**10 keep every product and partial sum an integer below 2**53. Int8 layers
(inputs integers in [0, 255], weights |w| <= 2**14 - 1; the v2 files) take inputs offset by -128 and weights as
two int8 planes (w = 256 * hi + lo, side by side), and get the planes' products from one of four backends, all
giving the same integer sums:

* light (few rows while the light kernels are in use, ``bbarc.kernel_choice``: decoding a few items loads
  neither numba nor torch): sum(a * w) + b over the nonzero inputs only (most pixels and many activations are 0),
  in float64: |a * w| < 2**22 and fan-in <= 1024, so every partial sum is an integer far below 2**53.
* a compiled int16 loop that skips zero inputs (``intkernels.small_product``), for up to ``SMALL_BATCH`` rows
  once the compiled kernels are in use: ``torch._int_mm``'s cost at one row is nearly that of dozens.
* int8 x int8 -> int32 products (``torch._int_mm``, VNNI on x86) for larger batches: far faster there.
* float32 products of the planes (numpy/BLAS) where torch is missing: every product is at most 2**14 and
  fan-in <= 1024 keeps every partial sum within 2**24, so float32 is exact in any order (``_float32_exact``
  checks this BLAS once, at the bound).

Rescaling between layers is one IEEE float64 multiply and a floor per value (correctly rounded, so identical
everywhere), then a clip at the layer's ``act_max``; numpy's form (light) and the compiled one-pass forms
(``bbarc.plugins.intkernels``) do the same float64 operations. The result: the same integers on every machine.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bbarc.errors import CodingError, ModelError
from bbarc.execution import refresh_thread_cap
from bbarc.kernel_choice import compiled_now
from bbarc.plugins import intkernels
from bbarc.plugins.weightfiles import read_weights, write_weights

ACT_MAX = float((1 << 16) - 1)
WEIGHT_MAX = (1 << 15) - 1
MAX_FAN_IN = 1 << 10
INT8_IN_MAX = 255.0  # int8 layers take inputs in [0, 255]
INT8_WEIGHT_MAX = (1 << 14) - 1  # and weights that split into two int8 planes
SMALL_BATCH = 4  # rows up to which int8 layers skip torch (the light products, or the compiled small loop)
TORCH_MIN_BATCH = SMALL_BATCH + 1  # rows from which they take torch's product, where torch is installed


@functools.lru_cache(maxsize=1)
def _float32_exact() -> bool:
    """Whether this BLAS's float32 product is exact on int8 planes, checked once at the bound: 1024 products of
    +-128 * +-128 sum to +-2**24 (a BLAS that computed in lower precision would round them)."""
    a = np.vstack([np.full(1024, -128), np.full(1024, 127), np.arange(1024) % 256 - 128]).astype(np.float32)
    b = np.hstack([np.full((1024, 2), -128), (np.arange(1024 * 3) % 251 - 125).reshape(1024, 3)]).astype(np.float32)
    for rows in (a[:1], a):  # one row (a vector product) and several (a matrix product): BLAS runs both
        if not np.array_equal((rows @ b).astype(np.int64), rows.astype(np.int64) @ b.astype(np.int64)):
            return False
    return True


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
    except Exception:  # no torch, or no int8 product on this build or CPU: float32 gives the same integers
        return None
    refresh_thread_cap()  # often loaded inside a coding call: cap torch's threads from now on
    return torch


class _Float64Layer:
    takes_int8 = False
    small = None

    def __init__(self, w: np.ndarray, b: np.ndarray):
        self.wt, self.b = w.astype(np.float64).T, b.astype(np.float64)
        self.n_out = w.shape[0]

    def __call__(self, a: np.ndarray, offset: bool, light: bool) -> np.ndarray:
        acc = np.asarray(a, dtype=np.float64) @ self.wt
        acc += self.b
        return acc

    def combine(self, acc: np.ndarray, light: bool) -> np.ndarray:
        return acc


class _Int8Layer:
    """An int8 layer (see the module docstring). Its products are (B, 2 * out), hi's then lo's; ``combine`` gives
    the exact accumulators hi * 256 + lo + offset. The small compiled loop computes sum(a * w) - 128 * colsum in
    int32: used only where 255 * sum(|w|) of every column is below 2**31 (checked here)."""

    takes_int8 = True

    def __init__(self, w: np.ndarray, b: np.ndarray):
        self._w = w.astype(np.int16)  # |w| < 2**14: the planes' arithmetic fits (and transposing int16 is cheap)
        self.n_out = len(w)
        self.b = np.asarray(b, np.float64)
        self.offset = 128.0 * self._w.sum(axis=1, dtype=np.int64) + self.b  # undoes the -128 input offset; exact
        self._torch_planes = None

    @functools.cached_property
    def planes(self) -> np.ndarray:
        """Both int8 planes side by side, float32 (in, 2 * out): hi's, then lo's."""
        w = self._w
        lo = (w + 128) % 256 - 128
        hi = (w - lo) // 256
        planes = np.empty((w.shape[1], 2 * self.n_out), np.float32)
        planes[:, : self.n_out] = hi.T
        planes[:, self.n_out :] = lo.T
        return planes

    @functools.cached_property
    def _dense(self) -> np.ndarray:
        """The weights, float64 (in, out), for the light path's products over the nonzero inputs only."""
        return np.ascontiguousarray(self._w.T, dtype=np.float64)

    @functools.cached_property
    def small(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The compiled small loop's int16 (in, out) weights and 128 * column sums; None where int32 could
        overflow. Made on first use: decoding a few items with the light kernels never needs it."""
        w = self._w
        if INT8_IN_MAX * np.abs(w.astype(np.int64)).sum(axis=1).max() >= 2.0**31:
            return None
        return np.ascontiguousarray(w.T), (128 * w.sum(axis=1, dtype=np.int64)).astype(np.int32)

    def __call__(self, a: np.ndarray, offset: bool, light: bool) -> np.ndarray:
        """The products of ``a`` with both weight planes. ``a``: integers in [0, 255]; with ``offset``, int8
        values already minus 128 (from the requantise step before)."""
        a = np.asarray(a)
        if not offset and a.size and (a.min() < 0 or a.max() > INT8_IN_MAX):
            raise CodingError(f"int8 layer inputs must lie in [0, 255], got [{a.min()}, {a.max()}]")
        rows = len(a)
        if light:  # the accumulators themselves: sum(a * w) + b over the nonzero inputs (most pixels and many
            # activations are 0), exact in float64: |a * w| < 2**22, fan-in <= 1024 and |b| < 2**52
            x = np.asarray(a, np.float64)
            acc = np.empty((rows, self.n_out))
            for i, row in enumerate(x):
                nz = np.flatnonzero(row)
                acc[i] = row[nz] @ self._dense[nz]
            acc += self.b
            return acc
        if not light and rows <= SMALL_BATCH and rows < TORCH_MIN_BATCH and self.small is not None:
            out = np.empty((rows, 2 * self.n_out), np.int32)
            intkernels.small_product(a, 128 if offset else 0, *self.small, out)
            return out
        if not offset:
            a = (a - 128).astype(np.int8)
        torch = None if rows < TORCH_MIN_BATCH and _float32_exact() else _torch()
        if torch is None:  # (int8 layers exist only where float32 is exact or torch works)
            return a.astype(np.float32) @ self.planes  # exact: see the module docstring
        if self._torch_planes is None:
            self._torch_planes = torch.from_numpy(self.planes.astype(np.int8))  # _int_mm's fast layout
        return torch._int_mm(torch.from_numpy(a), self._torch_planes).numpy()

    def combine(self, prod: np.ndarray, light: bool) -> np.ndarray:
        """The layer's exact accumulators (float64) from ``__call__``'s products."""
        if light:
            return prod  # the light path's products are the accumulators
        out = np.empty((len(prod), self.n_out), np.float64)
        intkernels.combine_planes(prod, self.offset, out)
        return out


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
        int8 = self.int8 and (_float32_exact() or _torch() is not None)
        layers = []
        for w, b, bound in zip(self.weights, self.biases, (self.in_max, *act_max)):
            fits = bound <= INT8_IN_MAX and np.abs(w).max() <= INT8_WEIGHT_MAX
            layers.append(_Int8Layer(w, b) if int8 and fits else _Float64Layer(w, b))
        object.__setattr__(self, "_layers", tuple(layers))

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple("int8" if layer.takes_int8 else "float64" for layer in self._layers)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        light = _light(len(x))
        return self._layers[-1].combine(self._hidden(x, light), light)

    def affine_bound(self, mul: np.ndarray, add: np.ndarray) -> float:
        """An upper bound on ``|affine(x, mul, add)|`` over every input: the last layer's inputs lie in [0, its
        input clip], so |sum| <= sum(|w|) * clip + |b|; a relative margin covers the bound's own rounding, and 1
        the floor."""
        clip = self.act_max[-1] if len(self.weights) > 1 else self.in_max
        acc = np.abs(self.weights[-1]).sum(axis=1) * clip + np.abs(self.biases[-1])
        return float((np.abs(mul) * acc + np.abs(add)).max() * (1 + 1e-9) + 1)

    def affine(self, x: np.ndarray, mul: np.ndarray, add: np.ndarray) -> np.ndarray:
        """``affine_floor(self(x), mul, add)`` (one ``mul``, ``add`` per output); compiled, in one pass over the
        last layer's products."""
        light = _light(len(x))
        prod, last = self._hidden(x, light), self._layers[-1]
        if light or not last.takes_int8:
            return affine_floor(last.combine(prod, light), mul, add)
        out = np.empty((len(prod), last.n_out), np.int64)
        intkernels.affine_planes(prod, last.offset, np.ascontiguousarray(mul, np.float64),
                                  np.ascontiguousarray(add, np.float64), out)
        return out

    def _hidden(self, x: np.ndarray, light: bool) -> np.ndarray:
        """Every layer but the last's rescaling: what the last layer returns (its ``combine`` gives its sums)."""
        a, offset = np.asarray(x), False
        for i, layer in enumerate(self._layers):
            acc = layer(a, offset, light)
            if i + 1 < len(self._layers):
                to_int8 = self._layers[i + 1].takes_int8
                if light:  # activations as they are (not offset to int8): the light products skip the zeros
                    a = _requantise(layer.combine(acc, True), self.rescale[i], self.act_max[i], False)
                    to_int8 = False
                else:
                    a = np.empty((len(acc), layer.n_out), np.int8 if to_int8 else np.float64)
                    if layer.takes_int8:
                        intkernels.requantise_planes(acc, layer.offset, self.rescale[i], self.act_max[i], to_int8, a)
                    else:
                        intkernels.requantise(acc, self.rescale[i], self.act_max[i], to_int8, a)
                offset = to_int8
        return acc


def _light(rows: int) -> bool:
    """numpy steps (no numba) for a network call of ``rows`` rows: few rows while the light kernels are in use."""
    return rows < TORCH_MIN_BATCH and not compiled_now()


def _requantise(acc: np.ndarray, rescale: np.ndarray, act_max: float, to_int8: bool) -> np.ndarray:
    """min(floor(max(acc, 0) * rescale), act_max) per value (correctly rounded float64 operations, as
    ``intkernels.requantise``); with ``to_int8``, int8 values minus 128: the input form of an int8 layer."""
    v = np.minimum(np.floor(np.maximum(acc, 0.0) * rescale), act_max)
    return (v - 128.0).astype(np.int8) if to_int8 else v


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
