"""Codecs: immutable values that push symbols onto the lanes of an ``AnsLanes`` and pop them off again.

``Codec`` is the protocol every codec follows; it codes many lanes (independent ANS messages) in one call, so one
network call and one kernel call serve every chunk coded in lockstep. The primitive codecs here have integer
frequencies derived with integer arithmetic (``bbarc.fixedpoint``), so a decoder always rebuilds exactly the
frequencies the encoder used. ``serial``, ``repeat`` and ``Mapped`` build codecs from codecs; ``bbarc.bitsback``
adds the bits-back step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Protocol

import numpy as np

from bbarc.errors import CodingError

from . import fixedpoint as fp
from .ans import AnsLanes, raise_unpushable
from .kernel_choice import kernel  # compiled or light kernels: the same integers (the rule is there)

MAX_PRECISION = 22  # categorical tables; mixtures allow more when they have few components (max_precision)


class Codec(Protocol):
    """A codec codes one block of symbols per lane, on many lanes at once.

    ``ids``: int64 array of distinct lane indices into ``lanes``. ``symbols`` has one entry per lane along its
    leading axis, ``symbols[p]`` for lane ``ids[p]``: int64 (len(ids), n) for the primitive codecs here, a tuple of
    the parts' symbols for ``serial``, (len(ids), n, ...) for ``repeat``, the items themselves (len(ids),
    *item_shape) for a model's item codec (``bbarc.bitsback``).

    ``status`` (int64, one per lane): -1 where the lane was coded; otherwise the index, within the part of the codec
    that failed first, of the symbol whose pop found too few bits. Such a lane is left part-coded and the caller
    discards it (the chain restarts it on a longer seed); the other lanes are coded exactly as if it were not
    there. A push fails this way only through the pops inside it (bits-back pops before it pushes). A symbol of
    probability 0 is not a lane status but a CodingError: pushed, it is data the model cannot code; pushed back
    while popping, it means the message was not written by this codec.
    """

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, symbols) -> np.ndarray:
        """Push ``symbols[p]`` onto lane ``ids[p]``; returns the status."""
        ...

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[Any, np.ndarray]:
        """Pop what ``push_lanes`` pushed off each lane in ``ids``: (symbols, status). The symbols of a failed
        lane are meaningless; a bits-back codec returns None for the symbols when every lane failed."""
        ...


def max_precision(components: int) -> int:
    """Largest precision keeping the mixture CDF's products below 2**62: K * 2**(12 + 24) * 2**prec."""
    return 26 - (max(components, 1) - 1).bit_length()  # ceil(log2(K)) in integers (called once per codec built)


def _lane_width(rows: int, ids: np.ndarray) -> int:
    if len(ids) == 0 or rows % len(ids):
        raise CodingError(f"a codec of {rows} symbols cannot be split evenly over {len(ids)} lanes")
    return rows // len(ids)


def _lane_symbols(symbols, lanes: int, n: int, limit: int) -> np.ndarray:
    arr = np.ascontiguousarray(symbols, dtype=np.int64)
    if arr.shape != (lanes, n):
        raise CodingError(f"expected symbols of shape ({lanes}, {n}) for {lanes} lanes, got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= limit):
        raise CodingError(f"symbols must lie in [0, {limit}), got values in [{arr.min()}, {arr.max()}]")
    return arr


def _pushed(status: np.ndarray, n: int) -> np.ndarray:
    """The status of a primitive push: a kernel's failure there is a symbol of probability 0 (see ``Codec``)."""
    if (status >= 0).any():
        raise_unpushable(int(status[status >= 0][0]), n)
    return status


@dataclass(frozen=True)
class Uniform:
    """``n`` symbols per lane, each uniform over [0, 2**bits)."""

    n: int
    bits: int

    def __post_init__(self):
        if not 1 <= self.bits <= 31:
            raise CodingError(f"uniform codec precision must be 1..31 bits, got {self.bits}")

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, symbols) -> np.ndarray:
        arr = _lane_symbols(symbols, len(ids), self.n, 1 << self.bits)
        return _pushed(lanes.run_push(kernel("push_uniform_lanes"), ids, self.n, arr, self.bits), self.n)

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((len(ids), self.n), np.int64)
        return out, lanes.run_pop(kernel("pop_uniform_lanes"), ids, out, self.bits)


@dataclass(frozen=True, eq=False)
class Categorical:
    """One categorical per symbol from integer CDF tables ``cdf`` (rows, S+1): 0 = cdf[:,0] < ... < cdf[:,S] =
    2**prec; one block of rows per lane, as ``LogisticMixture``."""

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

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, symbols) -> np.ndarray:
        n = _lane_width(len(self), ids)
        arr = _lane_symbols(symbols, len(ids), n, self.cdf.shape[1] - 1)
        return _pushed(lanes.run_push(kernel("push_table_lanes"), ids, n, arr, self.cdf, self.prec), n)

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((len(ids), _lane_width(len(self), ids)), np.int64)
        return out, lanes.run_pop(kernel("pop_table_lanes"), ids, out, self.cdf, self.prec)


@dataclass(frozen=True)
class Grid:
    """The bins a logistic mixture is discretised into: symbol k covers [edges[k-1], edges[k]) (fixed point)."""

    name: str
    edges: np.ndarray = field(repr=False, compare=False)
    # edge spacing when uniform; -bits for the 2**bits equal-mass logistic bins; else 0. Pops use it to guess a
    # symbol quickly (never which symbol they pop).
    step: int = field(init=False, repr=False, compare=False)

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
        grid = cls(f"logistic-bins-{bits}", fp.logistic_bin_edges(bits))
        object.__setattr__(grid, "step", -bits)
        return grid


def _check_mixture(grid: Grid, components: int, prec: int) -> None:
    if components > fp.MAX_COMPONENTS:
        raise CodingError(f"at most {fp.MAX_COMPONENTS} mixture components, got {components}")
    limit = max_precision(components)
    if not 1 <= prec <= limit or (1 << prec) < 2 * grid.symbols:
        raise CodingError(f"precision {prec} cannot code {grid.symbols} symbols with {components} "
                          f"components (at most {limit} bits)")


def _per_component(value, shape: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(value, dtype=np.int64)
    if arr.shape == shape:
        return np.ascontiguousarray(arr)
    if arr.ndim == 1:
        arr = arr[:, None]
    return np.ascontiguousarray(np.broadcast_to(arr, shape))


@dataclass(frozen=True, eq=False)
class LogisticMixture:
    """Per symbol, a K-component logistic mixture discretised onto ``grid``; one block of rows per lane (the
    parameters of a batched model output, one item per lane, in the order of ``ids``).

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
        _check_mixture(self.grid, shape[1], self.prec)
        inv = np.empty(shape, np.int64)  # log-scales are clipped to the table's range (see formats/SPEC.md)
        error = kernel("prepare_mixture")(mean, log_scale, weights, fp.inverse_scale_table(), fp.LOG_SCALE_MIN,
                                        1 << 30, 1 << fp.WEIGHT_BITS, inv)
        if error == 1:
            raise CodingError("mixture means must lie within +-2**30 (fixed point); the model produced larger ones")
        if error == 2:
            raise CodingError("mixture weights must be integers in [0, 4096] with a positive sum per symbol")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "log_scale", log_scale)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "_inv", inv)

    @classmethod
    def prepared(cls, grid: Grid, mean: np.ndarray, log_scale: np.ndarray, weights: np.ndarray, inv: np.ndarray,
                 prec: int, floor: bool = True) -> "LogisticMixture":
        """The codec of parameters already checked as ``__post_init__`` checks them, with their inverse scales
        looked up: contiguous int64 (n, K) arrays from one of ``kernels``' heads, which do in one pass what
        building the codec from slices of a network's outputs does in several."""
        _check_mixture(grid, mean.shape[1], prec)
        out = object.__new__(cls)
        for name, value in (("grid", grid), ("prec", prec), ("floor", floor), ("mean", mean),
                            ("log_scale", log_scale), ("weights", weights), ("_inv", inv)):
            object.__setattr__(out, name, value)
        return out

    def __len__(self) -> int:
        return len(self.mean)

    def _args(self):
        return self.grid.edges, self.grid.step, self.mean, self._inv, self.weights, fp.sigmoid_table(), self.prec, self.floor

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, symbols) -> np.ndarray:
        n = _lane_width(len(self), ids)
        arr = _lane_symbols(symbols, len(ids), n, self.grid.symbols)
        if self._bernoulli:
            return _pushed(lanes.run_push(kernel("push_binary_lanes"), ids, n, arr, *self._binary_args()), n)
        return _pushed(lanes.run_push(kernel("push_mixture_lanes"), ids, n, arr, *self._args()), n)

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((len(ids), _lane_width(len(self), ids)), np.int64)
        if self._bernoulli:
            return out, lanes.run_pop(kernel("pop_binary_lanes"), ids, out, *self._binary_args())
        return out, lanes.run_pop(kernel("pop_mixture_lanes"), ids, out, *self._args())

    @property
    def _bernoulli(self) -> bool:
        """Two symbols, one component: kernels that evaluate one sigmoid per symbol (the same integers)."""
        return self.grid.symbols == 2 and self.mean.shape[1] == 1

    def _binary_args(self):
        return self.grid.edges, self.mean, self._inv, self.weights, fp.sigmoid_table(), self.prec, self.floor

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
        kernel("mixture_cdf_rows")(*self._args(), out)
        return out


class Bytes:
    """A byte string of any length per lane (symbols: a list of ``bytes``): its bytes (uniform 8-bit symbols)
    under a 32-bit length."""

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, symbols: list[bytes]) -> np.ndarray:
        for p, data in enumerate(symbols):  # one lane at a time: the strings differ in length
            lane = ids[p : p + 1]
            arr = np.frombuffer(data, dtype=np.uint8).astype(np.int64)[None]
            Uniform(arr.shape[1], 8).push_lanes(lanes, lane, arr)
            Uniform(2, 16).push_lanes(lanes, lane, [[arr.shape[1] >> 16, arr.shape[1] & 0xFFFF]])
        return np.full(len(ids), -1, np.int64)

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[list, np.ndarray]:
        out, status = [], np.full(len(ids), -1, np.int64)
        for p in range(len(ids)):
            lane = ids[p : p + 1]
            length, status[p : p + 1] = Uniform(2, 16).pop_lanes(lanes, lane)
            n = (int(length[0, 0]) << 16) | int(length[0, 1])
            if status[p] < 0 and 8 * n > lanes.info_bits(int(lane[0])) + 1:
                status[p] = 0  # a damaged length: fail here rather than allocate it
            if status[p] >= 0:
                out.append(None)
                continue
            data, status[p : p + 1] = Uniform(n, 8).pop_lanes(lanes, lane)
            out.append(data.astype(np.uint8).tobytes())
        return out, status



# --- codecs built from codecs --------------------------------------------------------------------------------
# Their parts are built for every lane they are called with (e.g. from one batched network call), so a lane that
# fails in one part goes on through the others, keeping its first failure as its status; the caller discards it.


def _keep_first_failure(status: np.ndarray, more: np.ndarray) -> None:
    np.copyto(status, more, where=status < 0)


@dataclass(frozen=True)
class Serial:
    """Codecs one after the other on each lane: ``codecs[0]`` is pushed first and popped last. Symbols: a tuple with
    one entry per codec."""

    codecs: tuple

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, symbols: tuple) -> np.ndarray:
        if len(symbols) != len(self.codecs):
            raise CodingError(f"a serial codec of {len(self.codecs)} parts needs {len(self.codecs)} symbol entries, "
                              f"got {len(symbols)}")
        status = np.full(len(ids), -1, np.int64)
        for codec, part in zip(self.codecs, symbols):
            _keep_first_failure(status, codec.push_lanes(lanes, ids, part))
        return status

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[tuple, np.ndarray]:
        status, parts = np.full(len(ids), -1, np.int64), []
        for codec in reversed(self.codecs):
            part, more = codec.pop_lanes(lanes, ids)
            _keep_first_failure(status, more)
            parts.append(part)
        return tuple(reversed(parts)), status


def serial(*codecs: Codec) -> Serial:
    return Serial(codecs)


@dataclass(frozen=True)
class Repeat:
    """``codec`` ``n`` times on each lane. Symbols (lanes, n, ...): ``symbols[:, 0]`` is pushed first and popped
    last. (For a codec whose symbols are tuples, use ``serial(*[codec] * n)``.)"""

    codec: Codec
    n: int

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, symbols) -> np.ndarray:
        arr = np.asarray(symbols)
        if arr.shape[:2] != (len(ids), self.n):
            raise CodingError(f"repeat({self.n}) on {len(ids)} lanes needs symbols of shape ({len(ids)}, {self.n}, "
                              f"...), got {arr.shape}")
        status = np.full(len(ids), -1, np.int64)
        for i in range(self.n):
            _keep_first_failure(status, self.codec.push_lanes(lanes, ids, arr[:, i]))
        return status

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        status, parts = np.full(len(ids), -1, np.int64), []
        for _ in range(self.n):
            part, more = self.codec.pop_lanes(lanes, ids)
            _keep_first_failure(status, more)
            parts.append(part)
        if any(part is None for part in parts):
            return None, status
        return np.stack(parts[::-1], axis=1), status


def repeat(codec: Codec, n: int) -> Repeat:
    return Repeat(codec, n)


@dataclass(frozen=True)
class Mapped:
    """``codec`` on ``forward(values)``: pushes values, pops ``inverse(symbols)`` (e.g. items and the int64 symbols
    of their likelihood)."""

    codec: Codec
    forward: Callable[[Any], Any]
    inverse: Callable[[Any], Any]

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, values) -> np.ndarray:
        return self.codec.push_lanes(lanes, ids, self.forward(values))

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[Any, np.ndarray]:
        symbols, status = self.codec.pop_lanes(lanes, ids)
        return (None if symbols is None else self.inverse(symbols)), status
