"""``Source``: bounded-memory, item-range access to an input dataset (first axis = items)."""

from __future__ import annotations

import operator
from collections.abc import Iterator

import numpy as np

from .arrays import check_dtype, check_shape, native, native_copy
from bbarc.errors import UsageError


class Source:
    """Base class. Subclasses implement ``_read(start, stop)`` for a non-empty, validated range.

    ``dtype`` is the native-endian dtype that ``read`` returns; ``stored_dtype`` is the one in the file
    (byte order included), for callers that want to reproduce it. Not thread-safe: one per thread.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, description: str):
        self.description = description
        self.shape = check_shape(shape, description)
        self.stored_dtype = check_dtype(dtype, description)
        self.dtype = native(self.stored_dtype)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Items ``[start, stop)`` as a new C-ordered native-endian array; only those items are read."""
        try:
            start, stop = operator.index(start), operator.index(stop)
        except TypeError:
            raise UsageError(f"read range of {self.description} must be integers, got {start!r}, {stop!r}") from None
        if not 0 <= start <= stop <= len(self):
            raise UsageError(f"read range [{start}, {stop}) is outside {self.description}, which has {len(self)} items")
        if start == stop:
            return np.empty((0, *self.item_shape), dtype=self.dtype)
        return self._read(start, stop)

    def iter_blocks(self, block_items: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, items)`` for consecutive blocks of at most ``block_items`` items."""
        try:
            size = operator.index(block_items)
        except TypeError:
            size = 0
        if size < 1:
            raise UsageError(f"block size must be an integer of at least 1 item, got {block_items!r}")
        return ((start, self.read(start, min(start + size, len(self)))) for start in range(0, len(self), size))

    def _read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} shape={self.shape} dtype={self.dtype}>"


class ArraySource(Source):
    """An in-memory array (API use); ``read`` copies, so callers may modify what they get."""

    def __init__(self, array: np.ndarray, description: str = "in-memory array"):
        super().__init__(array.shape, array.dtype, description)
        self._array = array

    def _read(self, start: int, stop: int) -> np.ndarray:
        return native_copy(self._array[start:stop], self.dtype)
