"""MNIST IDX files (raw or gzip): header parsing, a streaming ``IdxSource`` and ``read_idx`` (a whole file at
once, as the training scripts load MNIST). The one IDX parser of bbarc.

Layout: two zero bytes, a dtype code, the number of dims, then that many big-endian u32 dims,
then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

from .arrays import native_copy
from bbarc.errors import UsageError
from .source import Source

IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_ERRORS = (OSError, EOFError, zlib.error)


def parse_idx_header(read, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """``(stored dtype, shape, header length)`` from a ``read(n) -> bytes`` callable."""
    magic = read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0":
        raise UsageError(f"{name} is not an IDX file (bad magic {magic!r}); expected MNIST-style *-ubyte data")
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise UsageError(f"{name} has IDX dtype code 0x{code:02X}, which is not one of {known}")
    dims = read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise UsageError(f"{name} is truncated inside its IDX header")
    return IDX_DTYPES[code], struct.unpack(f">{ndim}I", dims), 4 + 4 * ndim


class IdxSource(Source):
    """Raw files are memory-mapped; ``.gz`` files are read forward through one gzip stream
    (reading backwards makes gzip rewind and decompress from the start)."""

    def __init__(self, path: str):
        self._file = None
        self._map = None
        self._gzip = path.lower().endswith(".gz")
        try:
            self._open(path)
        except BaseException:
            self.close()
            raise

    def _open(self, path: str) -> None:
        try:
            self._file = gzip.open(path, "rb") if self._gzip else open(path, "rb")
            stored, shape, self._header_len = parse_idx_header(self._file.read, path)
        except _GZIP_ERRORS as exc:
            raise UsageError(f"cannot read IDX file {path!r}: {exc}") from None
        super().__init__(shape, stored, path)
        self._stored = stored
        self._item_bytes = math.prod(self.item_shape) * stored.itemsize
        if not self._gzip:
            self._map_raw(path)

    def _map_raw(self, path: str) -> None:
        expected = self._header_len + len(self) * self._item_bytes
        size = os.fstat(self._file.fileno()).st_size
        if size != expected:
            raise UsageError(
                f"{path} should be {expected} bytes for shape {self.shape} but is {size}: truncated or not IDX data"
            )
        self._map = np.memmap(self._file, dtype=self._stored, mode="r", offset=self._header_len, shape=self.shape)

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._file is None:
            raise UsageError(f"{self.description} is closed")
        if not self._gzip:
            return native_copy(self._map[start:stop], self.dtype)
        want = (stop - start) * self._item_bytes
        try:
            self._file.seek(self._header_len + start * self._item_bytes)
            data = self._file.read(want)
        except _GZIP_ERRORS as exc:
            raise UsageError(f"cannot read {self.description}: {exc}") from None
        if len(data) != want:
            raise UsageError(f"{self.description} is truncated: it ends before item {stop - 1} of {len(self)}")
        flat = np.frombuffer(data, dtype=self._stored)
        return native_copy(flat.reshape(stop - start, *self.item_shape), self.dtype)

    def close(self) -> None:
        self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None


def read_idx(path) -> np.ndarray:
    """The whole array stored in an IDX file (raw or ``.gz``), in native byte order; UsageError if unreadable."""
    with IdxSource(os.fspath(path)) as src:
        return src.read(0, len(src))
