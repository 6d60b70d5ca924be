"""``open_sink`` and ``save_array``: writers for decoded data (.npy, HDF5) that publish atomically on close.

No writer replaces an existing output unless asked (``overwrite``), none ever writes over one of its inputs,
and an HDF5 output adds its dataset to an existing file, keeping the file's other datasets.
"""

from __future__ import annotations

import errno
import math
import operator
import os
import shutil

import numpy as np

from .arrays import check_dtype, check_shape
from .atomic import (FORCE_HINT, check_target, fsync_path, output_errors, publish, remove_quietly, temp_path_for)
from bbarc.errors import UsageError
from .locations import parse_location

__all__ = ["open_sink", "save_array", "Sink"]

DEFAULT_HDF5_DATASET = "/data"
_HDF5_CHUNK_BYTES = 1 << 20
_HDF5_MARGIN = 256 << 10  # room for HDF5's own metadata (chunk index) within the reserved space
_OUTPUT_FORMATS = ".npy or .h5/.hdf5 (optionally file.h5:/dataset)"


def open_sink(path: str | os.PathLike, shape: tuple[int, ...], dtype: np.dtype, dataset: str | None = None,
              overwrite: bool = False, inputs=()) -> Sink:
    """A new ``.npy`` or HDF5 (``file.h5`` or ``file.h5:/path``, default dataset /data) of this shape and dtype.

    The file is written under a temp name and only appears at ``path`` on a successful ``close()``. An existing
    output is refused (UsageError) unless ``overwrite``; for HDF5 that is an existing dataset of the same name,
    as other datasets of an existing file are kept. ``inputs``: paths that must never be written over.
    """
    location = parse_location(path, dataset, must_exist=False, supported=_OUTPUT_FORMATS)
    if location.kind == "npy":
        return NpySink(location.path, shape, dtype, overwrite, inputs)
    if location.kind == "hdf5":
        return H5Sink(location.path, shape, dtype, location.dataset or DEFAULT_HDF5_DATASET, overwrite, inputs)
    raise UsageError(f"cannot write {location.path!r}: output must be {_OUTPUT_FORMATS}; IDX output is not supported")


def save_array(path: str | os.PathLike, array: np.ndarray, dataset: str | None = None, overwrite: bool = False,
               inputs=()) -> str:
    """Write one whole array to ``.npy`` or HDF5 as ``open_sink`` would; returns the description of what was
    written (the exact path named, never one with a suffix added)."""
    array = np.asarray(array)
    location = parse_location(path, dataset, must_exist=False, supported=_OUTPUT_FORMATS)
    if location.kind == "npy" and array.ndim == 0:
        # A single scalar item: the sinks count items along a first axis, np.save needs none.
        check_target(location.path, inputs, overwrite)
        temp = temp_path_for(location.path)
        try:
            with output_errors(location.path):
                with open(temp, "xb") as f:
                    np.save(f, array)
                    f.flush()
                    os.fsync(f.fileno())
                publish(temp, location.path, overwrite)
        except BaseException:
            remove_quietly(temp)
            raise
        return location.path
    if array.ndim == 0:
        raise UsageError(f"cannot write a single scalar to HDF5 {location.path!r}; select a range (a:b) instead")
    with open_sink(path, array.shape, array.dtype, dataset, overwrite, inputs) as sink:
        sink.write(0, array)
    return sink.description


class Sink:
    """Base class; subclasses create ``self._temp`` and implement ``_store``, ``_finish``, ``_discard``."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype, description: str):
        self.path = path
        self.description = description
        self.shape = check_shape(shape, f"output {description}")
        self.dtype = check_dtype(dtype, f"output {description}")
        self._written: list[tuple[int, int]] = []
        self._temp: str | None = temp_path_for(path)
        self._replace = True  # whether publishing may replace a file at ``path`` (subclasses say)

    def _create(self) -> None:
        """Create the temp file (subclasses); any failure removes it and says why (OutputError for OSError)."""
        try:
            with output_errors(self.path):
                self._open_temp()
        except BaseException:
            self.abort()
            raise

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
        try:
            with output_errors(self.path):
                self._store(start, stop, self._exact(array))
        except BaseException as exc:
            if not isinstance(exc, UsageError):  # the temp file's content is unknown now: give it up
                self.abort()
            raise
        self._written.append((start, stop))

    def close(self) -> None:
        """Finish the file and rename it onto ``path``; UsageError (and nothing written) if items are missing."""
        if self._temp is None:
            return
        try:
            missing = self._first_missing()
            if missing is not None:
                raise UsageError(f"output {self.description} is incomplete: item {missing} was never written")
            with output_errors(self.path):
                self._finish()
                fsync_path(self._temp)
                publish(self._temp, self.path, overwrite=self._replace)
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

    def _open_temp(self) -> None:
        raise NotImplementedError

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
    """Written with positioned writes into space reserved up front, not through a memmap: a full disk is then
    an error at creation (or a failed write), never a SIGBUS while storing items."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype, overwrite: bool = False, inputs=()):
        check_target(path, inputs, overwrite)
        super().__init__(path, shape, dtype, path)
        self._replace = overwrite
        self._file = None
        self._create()

    def _open_temp(self) -> None:
        self._file = open(self._temp, "xb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        try:
            np.lib.format.write_array_header_1_0(self._file, header)
        except ValueError:  # a header too long for format 1.0
            np.lib.format.write_array_header_2_0(self._file, header)
        self._file.flush()
        self._data_offset = self._file.tell()
        self._item_bytes = math.prod(self.item_shape) * self.dtype.itemsize
        total = self._data_offset + self.shape[0] * self._item_bytes
        try:
            os.posix_fallocate(self._file.fileno(), 0, total)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            os.ftruncate(self._file.fileno(), total)  # the filesystem cannot reserve: writes report ENOSPC
        except AttributeError:  # no posix_fallocate on this platform
            os.ftruncate(self._file.fileno(), total)

    def _store(self, start: int, stop: int, array: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(array)).cast("B")
        offset = self._data_offset + start * self._item_bytes
        fd = self._file.fileno()
        while data:
            written = os.pwrite(fd, data, offset)
            data, offset = data[written:], offset + written

    def _finish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class H5Sink(Sink):
    """Adds one dataset to a new or existing HDF5 file. An existing file is copied to the temp file, the dataset
    added there, and the copy renamed over the original: the file changes whole or not at all, and its other
    datasets stay."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: np.dtype, dataset: str, overwrite: bool = False,
                 inputs=()):
        import h5py

        check_target(path, inputs, overwrite=True)
        self._dataset = dataset
        self._base = None  # the existing file to add to, if any
        if os.path.lexists(path):
            if os.path.isfile(path) and h5py.is_hdf5(path):
                self._base = path
                with output_errors(path), h5py.File(path, "r") as existing:
                    taken = dataset in existing
                if taken and not overwrite:
                    raise UsageError(f"output {path}:{dataset} already exists; {FORCE_HINT} (the file's other "
                                     f"datasets are kept)")
            elif not overwrite:
                raise UsageError(f"output {path!r} already exists and is not an HDF5 file; {FORCE_HINT}")
        super().__init__(path, shape, dtype, f"{path}:{dataset}")
        self._replace = overwrite or self._base is not None  # the file it adds to is replaced by its copy
        self._file = None
        self._create()

    def _open_temp(self) -> None:
        import h5py

        if self._base is None:
            self._file = h5py.File(self._temp, "w")
        else:
            shutil.copyfile(self._base, self._temp)
            self._file = h5py.File(self._temp, "r+")
            if self._dataset in self._file:
                del self._file[self._dataset]
        try:
            self._ds = self._file.create_dataset(self._dataset, shape=self.shape, dtype=self.dtype,
                                                 chunks=self._chunks())
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(f"cannot create dataset {self.description}: {exc}") from None
        self._reserve()

    def _reserve(self) -> None:
        """Reserve the dataset's space in the temp file before HDF5 writes any of it: the HDF5 library crashes
        the process when a write fails for a full disk, so a full disk must show here, as an OSError. The
        reserved tail that HDF5 does not use is cut off again in ``_finish``."""
        needed = self.shape[0] * math.prod(self.item_shape) * self.dtype.itemsize
        fd = os.open(self._temp, os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size + needed + _HDF5_MARGIN + needed // 1000)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        except AttributeError:
            pass  # no posix_fallocate on this platform
        finally:
            os.close(fd)

    def _chunks(self) -> tuple[int, ...] | bool:
        # About 1 MiB of whole items per HDF5 chunk, so reading item ranges back stays cheap.
        item_bytes = math.prod(self.item_shape) * self.dtype.itemsize
        if item_bytes > _HDF5_CHUNK_BYTES:
            return True
        return (min(self.shape[0], _HDF5_CHUNK_BYTES // item_bytes), *self.item_shape)

    def _store(self, start: int, stop: int, array: np.ndarray) -> None:
        self._ds[start:stop] = array

    def _finish(self) -> None:
        # Forget the file before closing: closing it again after a failed close (disk full while HDF5 flushes)
        # crashes the HDF5 library.
        self._file.flush()
        end = self._file.id.get_filesize()  # where HDF5's data ends, before the unused reserved tail
        file, self._file = self._file, None
        file.close()
        if os.path.getsize(self._temp) > end:
            os.truncate(self._temp, end)

    def _discard(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except Exception:
                pass  # the temp file goes anyway
            self._file = None
