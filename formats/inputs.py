"""``open_source``: the input datasets bbarc reads (.npy, HDF5, MNIST IDX, in-memory arrays)."""

from __future__ import annotations

import os

import numpy as np

from .arrays import native_copy
from bbarc.errors import UsageError
from .idx import IdxSource
from .locations import parse_location
from .source import ArraySource, Source

__all__ = ["open_source", "Source"]

_NPY_MAGIC = b"\x93NUMPY"
_MAX_LISTED = 20


def open_source(spec: str | os.PathLike | np.ndarray, dataset: str | None = None) -> Source:
    """Open ``spec`` (a path, ``file.h5:/dataset``, or an ndarray) for item-range reads."""
    if isinstance(spec, np.ndarray):
        if dataset is not None:
            raise UsageError("a dataset name only applies to HDF5 files, not to an in-memory array")
        return ArraySource(spec)
    if not isinstance(spec, (str, bytes, os.PathLike)):
        raise UsageError(f"input must be a path or a numpy array, got {type(spec).__name__}")
    location = parse_location(spec, dataset, must_exist=True)
    if os.path.isdir(location.path):
        raise UsageError(f"input {location.path!r} is a directory; give a data file")
    if location.kind == "npy":
        return NpySource(location.path)
    if location.kind == "hdf5":
        return H5Source(location.path, location.dataset)
    return IdxSource(location.path)


class NpySource(Source):
    """A memory-mapped .npy file; ``read`` touches only the pages of the requested items."""

    def __init__(self, path: str):
        try:
            with open(path, "rb") as f:
                magic = f.read(len(_NPY_MAGIC))
        except OSError as exc:
            raise UsageError(f"cannot read {path!r}: {exc.strerror}") from None
        if magic != _NPY_MAGIC:
            raise UsageError(f"{path!r} is not a .npy file (no NUMPY magic); save arrays with numpy.save")
        try:
            self._map = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise UsageError(f"cannot read {path!r}: {exc}; it may be truncated or hold Python objects") from None
        super().__init__(self._map.shape, self._map.dtype, path)

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._map is None:
            raise UsageError(f"{self.description} is closed")
        return native_copy(self._map[start:stop], self.dtype)

    def close(self) -> None:
        self._map = None


def list_datasets(h5file) -> list[str]:
    """Absolute paths of all datasets in an open h5py File."""
    import h5py

    found: list[str] = []
    h5file.visititems(lambda name, obj: found.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
    return found


def _listing(paths: list[str]) -> str:
    if not paths:
        return "(none)"
    shown = ", ".join(paths[:_MAX_LISTED])
    return shown + (f" ... ({len(paths)} in all)" if len(paths) > _MAX_LISTED else "")


class H5Source(Source):
    """One dataset of an HDF5 file; HDF5 converts byte order while reading into a native buffer."""

    def __init__(self, path: str, dataset: str | None):
        import h5py

        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise UsageError(f"cannot open {path!r} as HDF5: {exc}") from None
        try:
            self._ds = self._pick(path, dataset)
            if self._ds.shape is None:
                raise UsageError(f"{path}:{self._ds.name} has no dataspace (an empty HDF5 dataset)")
            super().__init__(self._ds.shape, self._ds.dtype, f"{path}:{self._ds.name}")
        except BaseException:
            self.close()
            raise

    def _pick(self, path: str, dataset: str | None):
        import h5py

        available = list_datasets(self._file)
        if dataset is None:
            if len(available) == 1:
                return self._file[available[0]]
            if not available:
                raise UsageError(f"{path!r} contains no datasets")
            raise UsageError(
                f"{path!r} holds several datasets: {_listing(available)}; "
                f"choose one with {path}:/name or the dataset option"
            )
        obj = self._file.get(dataset)
        if not isinstance(obj, h5py.Dataset):
            what = "is a group, not a dataset" if obj is not None else "does not exist"
            raise UsageError(f"dataset {dataset!r} {what} in {path!r}; available datasets: {_listing(available)}")
        return obj

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._file is None:
            raise UsageError(f"{self.description} is closed")
        out = np.empty((stop - start, *self.item_shape), dtype=self.dtype)
        self._ds.read_direct(out, np.s_[start:stop])
        return out

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None
