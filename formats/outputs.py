"""``open_sink``: writers for decompressed data (.npy, HDF5) that publish atomically on close."""

from __future__ import annotations

import math
import operator
import os

import numpy as np

from .arrays import check_dtype, check_shape
from .atomic import fsync_path, publish, remove_quietly, temp_path_for
from bbarc.errors import UsageError
from .locations import parse_location

__all__ = ["open_sink", "Sink"]

DEFAULT_HDF5_DATASET = "/data"
_HDF5_CHUNK_BYTES = 1 << 20
_OUTPUT_FORMATS = ".npy or .h5/.hdf5 (optionally file.h5:/dataset)"


def open_sink(path: str | os.PathLike, shape: tuple[int, ...], dtype: np.dtype, dataset: str | None = None) -> Sink:
    """A new ``.npy`` or HDF5 (``file.h5`` or ``file.h5:/path``, default dataset /data) of this shape and dtype.

    The file is written under a temp name and only appears at ``path`` on a successful ``close()``.
    """
    location = parse_location(path, dataset, must_exist=False, supported=_OUTPUT_FORMATS)
    if location.kind == "npy":
        return NpySink(location.path, shape, dtype)
    if location.kind == "hdf5":
        return H5Sink(location.path, shape, dtype, location.dataset or DEFAULT_HDF5_DATASET)
    raise UsageError(f"cannot write {location.path!r}: output must be {_OUTPUT_FORMATS}; IDX output is not supported")


class Sink:
    """Base class; subclasses create ``self._temp`` and implement ``_store``, ``_finish``, ``_discard``."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype, description: str):
        self.path = path
        self.description = description
        self.shape = check_shape(shape, f"output {description}")
        self.dtype = check_dtype(dtype, f"output {description}")
        self._written: list[tuple[int, int]] = []
        self._temp: str | None = temp_path_for(path)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def write(self, start: int, array: np.ndarray) -> None:
        """Store ``array`` as items ``[start, start + len(array))``; values must fit the sink dtype exactly."""
        if self._temp is None:
            raise UsageError(f"output {self.description} is already closed")
        try:
            start = operator.index(start)
        except TypeError:
            raise UsageError(f"start item must be an integer, got {type(start).__name__}") from None
        array = np.asarray(array)
        if array.shape[1:] != self.item_shape or array.ndim != len(self.shape):
            raise UsageError(f"items of shape {array.shape[1:]} don't fit {self.description} (items {self.item_shape})")
        stop = start + array.shape[0]
        if not 0 <= start <= stop <= self.shape[0]:
            raise UsageError(f"items [{start}, {stop}) are outside {self.description}, which has {self.shape[0]} items")
        self._store(start, stop, self._exact(array))
        self._written.append((start, stop))

    def close(self) -> None:
        """Finish the file and rename it onto ``path``; UsageError (and nothing written) if items are missing."""
        if self._temp is None:
            return
        try:
            missing = self._first_missing()
            if missing is not None:
                raise UsageError(f"output {self.description} is incomplete: item {missing} was never written")
            self._finish()
            fsync_path(self._temp)
            publish(self._temp, self.path)
            self._temp = None
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the temp file; the target path is left as it was."""
        if self._temp is not None:
            try:
                self._discard()
            finally:
                remove_quietly(self._temp)
                self._temp = None

    def _exact(self, array: np.ndarray) -> np.ndarray:
        if array.dtype == self.dtype:
            return array
        # A round trip back to the source dtype catches every lossy cast (int64 -> float64 included).
        with np.errstate(invalid="ignore", over="ignore"):
            converted = array.astype(self.dtype)
            back = converted.astype(array.dtype)
        if not np.array_equal(back, array, equal_nan=array.dtype.kind == "f"):
            raise UsageError(f"values of dtype {array.dtype} do not fit {self.description} ({self.dtype}) exactly")
        return converted

    def _first_missing(self) -> int | None:
        covered = 0
        for start, stop in sorted(self._written):
            if start > covered:
                return covered
            covered = max(covered, stop)
        return covered if covered < self.shape[0] else None

    def _store(self, start: int, stop: int, array: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        try:
            self.abort()
        except Exception:
            pass


class NpySink(Sink):
    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype):
        super().__init__(path, shape, dtype, path)
        try:
            self._map = np.lib.format.open_memmap(self._temp, mode="w+", dtype=self.dtype, shape=self.shape)
        except BaseException:
            self.abort()
            raise

    def _store(self, start: int, stop: int, array: np.ndarray) -> None:
        self._map[start:stop] = array

    def _finish(self) -> None:
        self._map.flush()
        self._map = None  # unmaps, so the temp file can be fsynced and renamed as a plain file

    def _discard(self) -> None:
        self._map = None


class H5Sink(Sink):
    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype, dataset: str):
        import h5py

        super().__init__(path, shape, dtype, f"{path}:{dataset}")
        self._file = None
        try:
            self._file = h5py.File(self._temp, "w")
            self._ds = self._file.create_dataset(dataset, shape=self.shape, dtype=self.dtype, chunks=self._chunks())
        except BaseException:
            self.abort()
            raise

    def _chunks(self) -> tuple[int, ...] | bool:
        # About 1 MiB of whole items per HDF5 chunk, so reading item ranges back stays cheap.
        item_bytes = math.prod(self.item_shape) * self.dtype.itemsize
        if item_bytes > _HDF5_CHUNK_BYTES:
            return True
        return (min(self.shape[0], _HDF5_CHUNK_BYTES // item_bytes), *self.item_shape)

    def _store(self, start: int, stop: int, array: np.ndarray) -> None:
        self._ds[start:stop] = array

    def _finish(self) -> None:
        self._file.close()
        self._file = None

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
