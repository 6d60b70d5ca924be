"""Integer-exact MLP inference.

Weights and activations are integers, so a layer's result is an exact integer however it is computed; two
backends compute it:

* float64 matrix products (numpy/BLAS): weights |w| < 2**15, inputs < 2**16 (or the decoder's fixed-point
  latents), fan-in <= 2**10, so every product and partial sum is an integer below 2**53 and exact whatever the
  summation order, batch size or thread count.
* int8 products, for layers whose inputs are integers in [0, 255] and whose weights satisfy |w| <= 2**14 - 1.
  Inputs go in with an offset of -128, weights as two int8 planes (w = 256 * hi + lo), so every product is at
  most 128 * 128 = 2**14 in magnitude and, with fan-in <= 1024, every partial sum at most 2**24. Two ways compute
  them exactly: float32 matrix products (numpy/BLAS: integers up to 2**24 are exact in float32, whatever the
  order of the sums), the fastest at small batches and with nothing to import; and ``torch._int_mm`` (int32
  accumulation, VNNI on x86), several times faster at larger ones. The choice is by batch (``TORCH_MIN_BATCH``,
  where torch is installed): speed only, as both give the same integers (checked once each, ``_float32_exact``
  and ``_torch``, against exact integer arithmetic).

Rescaling between layers is one IEEE float64 multiply and a floor per value (correctly rounded, so identical
everywhere), then a clip at the layer's ``act_max``. The result: the same integers on every machine.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bbarc.errors import CodingError, ModelError
from bbarc.execution import refresh_thread_cap
from bbarc.plugins.weightfiles import read_weights, write_weights

ACT_MAX = float((1 << 16) - 1)
WEIGHT_MAX = (1 << 15) - 1
MAX_FAN_IN = 1 << 10
INT8_IN_MAX = 255.0  # int8 layers take inputs in [0, 255]
INT8_WEIGHT_MAX = (1 << 14) - 1  # and weights that split into two int8 planes
# Batches this large use torch's int8 product when torch is installed (importing it costs seconds, once); smaller
# ones, and every batch without torch, the float32 product, as fast or faster there. Decoding one item is batch 1.
TORCH_MIN_BATCH = 4


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
    except Exception:  # no torch, or no int8 product on this build or CPU: coding still works, in float64
        return None
    refresh_thread_cap()  # the networks are often built inside a coding call: cap torch's threads from now on
    return torch


@functools.lru_cache(maxsize=1)
def _intkernels():
    """The compiled requantise/combine (numba), loaded on the first large batch."""
    from bbarc.plugins import intkernels

    one = np.zeros((1, 1))
    intkernels.requantise(one, np.ones(1), 1.0, False, one)  # numba loads more libraries (a BLAS) on a first call
    refresh_thread_cap()  # inside a coding call: cap their threads from now on
    return intkernels


class _Float64Layer:
    takes_int8 = False

    def __init__(self, w: np.ndarray, b: np.ndarray):
        self.wt, self.b = w.astype(np.float64).T, b.astype(np.float64)

    def __call__(self, a: np.ndarray, offset: bool = False) -> np.ndarray:
        acc = np.asarray(a, dtype=np.float64) @ self.wt
        acc += self.b
        return acc


def _requantise(acc: np.ndarray, rescale: np.ndarray, act_max: float, to_int8: bool) -> np.ndarray:
    """min(floor(max(acc, 0) * rescale), act_max) per value (correctly rounded float64 operations); with
    ``to_int8``, int8 values minus 128: the input form of an int8 layer. Large batches in one compiled pass."""
    if len(acc) >= TORCH_MIN_BATCH:
        out = np.empty(acc.shape, np.int8 if to_int8 else np.float64)
        _intkernels().requantise(acc, rescale, act_max, to_int8, out)
        return out
    v = np.minimum(np.floor(np.maximum(acc, 0.0) * rescale), act_max)
    return (v - 128.0).astype(np.int8) if to_int8 else v


class _Int8Layer:
    takes_int8 = True

    def __init__(self, w: np.ndarray, b: np.ndarray):
        self.out = len(w)
        self.planes = np.empty((2 * self.out, w.shape[1]), np.float32)  # (2 * out, in): hi over lo
        hi, lo = self.planes[: self.out], self.planes[self.out :]
        np.add(w, 128.0, out=hi)  # hi = floor((w + 128) / 256), lo = w - 256 * hi: exact, |w| < 2**14 in float32
        np.floor(np.multiply(hi, 1.0 / 256.0, out=hi), out=hi)
        np.subtract(w, np.multiply(hi, 256.0, out=lo), out=lo)
        self.offset = 128.0 * w.sum(axis=1) + b  # undoes the -128 input offset; exact (integers below 2**53)
        self._torch_planes = None

    def __call__(self, a: np.ndarray, offset: bool = False) -> np.ndarray:
        """``a``: integers in [0, 255]; with ``offset``, int8 values already minus 128 (from ``_requantise``)."""
        a = np.asarray(a)
        if not offset:
            if a.size and (a.min() < 0 or a.max() > INT8_IN_MAX):
                raise CodingError(f"int8 layer inputs must lie in [0, 255], got [{a.min()}, {a.max()}]")
            a = (a - 128).astype(np.int8)
        torch = _torch() if len(a) >= TORCH_MIN_BATCH else None
        if torch is None:
            both = a.astype(np.float32) @ self.planes.T  # exact: see the module docstring
            hi, lo = both[:, : self.out], both[:, self.out :]
        else:
            if self._torch_planes is None:
                planes = self.planes.astype(np.int8)
                self._torch_planes = tuple(torch.from_numpy(np.ascontiguousarray(p.T)) for p in
                                           (planes[: self.out], planes[self.out :]))  # (in, out): _int_mm's fast layout
            x = torch.from_numpy(a)
            hi, lo = (torch._int_mm(x, p).numpy() for p in self._torch_planes)
            out = np.empty(hi.shape, np.float64)
            _intkernels().combine(hi, lo, self.offset, out)
            return out
        out = np.multiply(hi, 256.0, dtype=np.float64)  # hi * 256 + lo + offset, all exact in float64
        out += lo
        out += self.offset
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
        int8 = self.int8 and _float32_exact()
        layers = []
        for w, b, bound in zip(self.weights, self.biases, (self.in_max, *act_max)):
            fits = bound <= INT8_IN_MAX and np.abs(w).max() <= INT8_WEIGHT_MAX
            layers.append(_Int8Layer(w, b) if int8 and fits else _Float64Layer(w, b))
        object.__setattr__(self, "_layers", tuple(layers))

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple("int8" if layer.takes_int8 else "float64" for layer in self._layers)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        a, offset = np.asarray(x), False
        for i, layer in enumerate(self._layers):
            acc = layer(a, offset)
            if i + 1 < len(self._layers):
                offset = self._layers[i + 1].takes_int8
                a = _requantise(acc, self.rescale[i], self.act_max[i], offset)
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
