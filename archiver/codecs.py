"""Codecs: small immutable values that push symbols onto an ``AnsStack`` and pop them off again.

Every codec's frequencies are integers derived with integer arithmetic (``bbarc.fixedpoint``), so a decoder
always rebuilds exactly the frequencies the encoder used. Symbols are int64 arrays; ``pop`` returns as many
symbols as the codec describes (its length), in the order they were pushed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from bbarc.errors import CodingError

from . import fixedpoint as fp
from . import kernels
from .ans import AnsLanes, AnsStack

MAX_PRECISION = 22  # categorical tables; mixtures allow more when they have few components (max_precision)


def max_precision(components: int) -> int:
    """Largest precision keeping the mixture CDF's products below 2**62: K * 2**(12 + 24) * 2**prec."""
    return 26 - int(np.ceil(np.log2(max(components, 1))))


def _in_range(arr: np.ndarray, limit: int) -> np.ndarray:
    if arr.size and (arr.min() < 0 or arr.max() >= limit):
        raise CodingError(f"symbols must lie in [0, {limit}), got values in [{arr.min()}, {arr.max()}]")
    return arr


def _lane_width(rows: int, ids: np.ndarray) -> int:
    if len(ids) == 0 or rows % len(ids):
        raise CodingError(f"a codec of {rows} symbols cannot be split evenly over {len(ids)} lanes")
    return rows // len(ids)


def _lane_symbols(symbols, lanes: int, n: int, limit: int) -> np.ndarray:
    arr = np.ascontiguousarray(symbols, dtype=np.int64)
    if arr.shape != (lanes, n):
        raise CodingError(f"expected symbols of shape ({lanes}, {n}) for {lanes} lanes, got {arr.shape}")
    return _in_range(arr, limit)


def _symbols(symbols, n: int | None, limit: int) -> np.ndarray:
    arr = np.ascontiguousarray(symbols, dtype=np.int64).reshape(-1)
    if n is not None and len(arr) != n:
        raise CodingError(f"this codec codes {n} symbols, got {len(arr)}")
    return _in_range(arr, limit)


@dataclass(frozen=True)
class Uniform:
    """``n`` symbols, each uniform over [0, 2**bits)."""

    n: int
    bits: int

    def __post_init__(self):
        if not 1 <= self.bits <= 31:
            raise CodingError(f"uniform codec precision must be 1..31 bits, got {self.bits}")

    def push(self, stack: AnsStack, symbols) -> None:
        arr = _symbols(symbols, self.n, 1 << self.bits)
        stack.run_push(kernels.push_uniform, len(arr), arr, self.bits)

    def pop(self, stack: AnsStack) -> np.ndarray:
        return stack.run_pop(kernels.pop_uniform, np.empty(self.n, np.int64), self.bits)

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, symbols) -> np.ndarray:
        """Push ``symbols[p]`` (``n`` each) onto lane ``ids[p]``; returns per-lane status (see ``AnsLanes``)."""
        arr = _lane_symbols(symbols, len(ids), self.n, 1 << self.bits)
        return lanes.run_push(kernels.push_uniform_lanes, ids, self.n, arr, self.bits)

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pop ``n`` symbols off each lane in ``ids``: (symbols (len(ids), n), per-lane status)."""
        out = np.empty((len(ids), self.n), np.int64)
        return out, lanes.run_pop(kernels.pop_uniform_lanes, ids, out, self.bits)


@dataclass(frozen=True, eq=False)
class Categorical:
    """One categorical per symbol from integer CDF tables ``cdf`` (n, S+1): 0 = cdf[:,0] < ... < cdf[:,S] = 2**prec."""

    cdf: np.ndarray
    prec: int

    def __post_init__(self):
        cdf = np.ascontiguousarray(self.cdf, dtype=np.int64)
        if cdf.ndim != 2 or cdf.shape[1] < 2:
            raise CodingError(f"cdf must have shape (n, symbols + 1), got {cdf.shape}")
        if not 1 <= self.prec <= MAX_PRECISION:
            raise CodingError(f"precision must be 1..{MAX_PRECISION} bits, got {self.prec}")
        if (cdf[:, 0] != 0).any() or (cdf[:, -1] != 1 << self.prec).any() or (np.diff(cdf, axis=1) <= 0).any():
            raise CodingError("cdf rows must rise strictly from 0 to 2**prec: every symbol needs frequency >= 1")
        object.__setattr__(self, "cdf", cdf)

    def __len__(self) -> int:
        return len(self.cdf)

    def take(self, rows: slice) -> "Categorical":
        return Categorical(self.cdf[rows], self.prec)

    def push(self, stack: AnsStack, symbols) -> None:
        arr = _symbols(symbols, len(self.cdf), self.cdf.shape[1] - 1)
        stack.run_push(kernels.push_table, len(arr), arr, 0, self.cdf, self.prec)

    def pop(self, stack: AnsStack) -> np.ndarray:
        return stack.run_pop(kernels.pop_table, np.empty(len(self.cdf), np.int64), 0, self.cdf, self.prec)

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, symbols) -> np.ndarray:
        """Like ``LogisticMixture.push_lanes``: rows ``p * n .. (p + 1) * n`` go to lane ``ids[p]``."""
        n = _lane_width(len(self), ids)
        arr = _lane_symbols(symbols, len(ids), n, self.cdf.shape[1] - 1)
        return lanes.run_push(kernels.push_table_lanes, ids, n, arr, self.cdf, self.prec)

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((len(ids), _lane_width(len(self), ids)), np.int64)
        return out, lanes.run_pop(kernels.pop_table_lanes, ids, out, self.cdf, self.prec)


@dataclass(frozen=True)
class Grid:
    """The bins a logistic mixture is discretised into: symbol k covers [edges[k-1], edges[k]) (fixed point)."""

    name: str
    edges: np.ndarray = field(repr=False, compare=False)
    step: int = field(init=False, repr=False, compare=False)  # edge spacing when uniform (a faster pop), else 0

    def __post_init__(self):
        edges = np.asarray(self.edges)
        if edges.dtype != np.int64 or edges.ndim != 1 or (np.diff(edges) <= 0).any() or (
                len(edges) and np.abs(edges).max() > 1 << 30):
            raise CodingError(f"grid {self.name!r}: edges must be rising int64 values within +-2**30 (fixed point)")
        diffs = np.unique(np.diff(edges))
        object.__setattr__(self, "step", int(diffs[0]) if len(diffs) == 1 else 0)

    @property
    def symbols(self) -> int:
        return len(self.edges) + 1

    @classmethod
    @lru_cache(maxsize=None)
    def levels(cls, n: int) -> "Grid":
        """Integer levels 0..n-1 with edges at k - 1/2: the discretised logistic (outer bins take the tails)."""
        return cls(f"levels-{n}", fp.level_edges(n))

    @classmethod
    @lru_cache(maxsize=None)
    def binary(cls) -> "Grid":
        """Two symbols split at 0: a logistic of mean ``logit`` and scale 1 is a Bernoulli(sigmoid(logit))."""
        return cls("binary", np.zeros(1, dtype=np.int64))

    @classmethod
    @lru_cache(maxsize=None)
    def latent(cls, bits: int) -> "Grid":
        """2**bits bins of equal mass under the standard logistic prior (fixed, whatever the layer above)."""
        return cls(f"logistic-bins-{bits}", fp.logistic_bin_edges(bits))


def _per_component(value, shape: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(value, dtype=np.int64)
    if arr.shape == shape:
        return np.ascontiguousarray(arr)
    if arr.ndim == 1:
        arr = arr[:, None]
    return np.ascontiguousarray(np.broadcast_to(arr, shape))


@dataclass(frozen=True, eq=False)
class LogisticMixture:
    """Per symbol, a K-component logistic mixture discretised onto ``grid``.

    mean: int (n, K), fixed point with ``fp.POS_BITS`` fractional bits, in the grid's units.
    log_scale: int (n, K), natural log of the scale in units of 1/32 (clipped to the exact table's range).
    weights: int (n, K) in [0, 2**12], not all zero (see ``fp.mixture_weights`` for an exact softmax).
    floor: every symbol gets frequency >= 1 (needed to *push* data). A posterior only ever pushes back what it
        popped, so it can go without (``floor=False``): no mass is spread over implausible bins.
    """

    grid: Grid
    mean: np.ndarray
    log_scale: np.ndarray
    weights: np.ndarray
    prec: int
    floor: bool = True

    def __post_init__(self):
        mean = np.ascontiguousarray(self.mean, dtype=np.int64)
        if mean.ndim == 1:
            mean = mean[:, None]
        shape = mean.shape
        log_scale, weights = (_per_component(v, shape) for v in (self.log_scale, self.weights))
        if shape[1] > fp.MAX_COMPONENTS:
            raise CodingError(f"at most {fp.MAX_COMPONENTS} mixture components, got {shape[1]}")
        limit = max_precision(shape[1])
        if not 1 <= self.prec <= limit or (1 << self.prec) < 2 * self.grid.symbols:
            raise CodingError(f"precision {self.prec} cannot code {self.grid.symbols} symbols with {shape[1]} "
                              f"components (at most {limit} bits)")
        inv = np.empty(shape, np.int64)  # log-scales are clipped to the table's range (see formats/SPEC.md)
        error = kernels.prepare_mixture(mean, log_scale, weights, fp.inverse_scale_table(), fp.LOG_SCALE_MIN,
                                        1 << 30, 1 << fp.WEIGHT_BITS, inv)
        if error == 1:
            raise CodingError("mixture means must lie within +-2**30 (fixed point); the model produced larger ones")
        if error == 2:
            raise CodingError("mixture weights must be integers in [0, 4096] with a positive sum per symbol")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "log_scale", log_scale)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "_inv", inv)

    def __len__(self) -> int:
        return len(self.mean)

    def _args(self):
        return self.grid.edges, self.grid.step, self.mean, self._inv, self.weights, fp.sigmoid_table(), self.prec, self.floor

    def push(self, stack: AnsStack, symbols) -> None:
        arr = _symbols(symbols, len(self), self.grid.symbols)
        stack.run_push(kernels.push_mixture, len(arr), arr, 0, *self._args())

    def pop(self, stack: AnsStack) -> np.ndarray:
        return stack.run_pop(kernels.pop_mixture, np.empty(len(self), np.int64), 0, *self._args())

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, symbols) -> np.ndarray:
        """Push ``symbols[p]`` onto lane ``ids[p]`` with rows ``p * n .. (p + 1) * n`` of this codec (a batched
        model output, one item per lane); returns per-lane status (see ``AnsLanes.run_push``)."""
        n = _lane_width(len(self), ids)
        arr = _lane_symbols(symbols, len(ids), n, self.grid.symbols)
        return lanes.run_push(kernels.push_mixture_lanes, ids, n, arr, *self._args())

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pop this codec's rows ``p * n .. (p + 1) * n`` off lane ``ids[p]``: (symbols, per-lane status)."""
        out = np.empty((len(ids), _lane_width(len(self), ids)), np.int64)
        return out, lanes.run_pop(kernels.pop_mixture_lanes, ids, out, *self._args())

    def take(self, rows: slice) -> "LogisticMixture":
        """The codec of a slice of the symbols (rows of a batched model output); no re-validation needed."""
        out = object.__new__(LogisticMixture)
        for name in ("grid", "prec", "floor"):
            object.__setattr__(out, name, getattr(self, name))
        for name in ("mean", "log_scale", "weights", "_inv"):
            object.__setattr__(out, name, getattr(self, name)[rows])
        return out

    def cdf_table(self) -> np.ndarray:
        """The full integer CDF (n, S+1) this codec codes with (for tests and cost accounting)."""
        out = np.empty((len(self), self.grid.symbols + 1), dtype=np.int64)
        kernels.mixture_cdf_rows(*self._args(), out)
        return out


class Bytes:
    """A byte string of any length: its bytes (uniform 8-bit symbols) under a 32-bit length."""

    @staticmethod
    def push(stack: AnsStack, data: bytes) -> None:
        arr = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        Uniform(len(arr), 8).push(stack, arr)
        Uniform(2, 16).push(stack, [len(arr) >> 16, len(arr) & 0xFFFF])

    @staticmethod
    def pop(stack: AnsStack) -> bytes:
        hi, lo = Uniform(2, 16).pop(stack)
        n = (int(hi) << 16) | int(lo)
        if 8 * n > stack.info_bits + 1:
            raise CodingError(f"a {n}-byte string cannot sit on a stack holding {stack.info_bits:.0f} bits")
        return Uniform(n, 8).pop(stack).astype(np.uint8).tobytes()
