"""Turning a user's data spec (``x.npy``, ``x.h5:/grp/ds``, ``train-images-idx3-ubyte.gz``) into path and kind."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from bbarc.errors import UsageError

HDF5_SUFFIXES = (".h5", ".hdf5")
_IDX_NAME = re.compile(r"(ubyte|\.idx\d?)(\.gz)?$")
SUPPORTED_FORMATS = ".npy, .h5/.hdf5 (optionally file.h5:/dataset) or MNIST IDX (*-ubyte, *-ubyte.gz)"


@dataclass(frozen=True)
class Location:
    path: str
    kind: str  # "npy", "hdf5" or "idx"
    dataset: str | None  # HDF5 only, always starting with "/"

    @property
    def description(self) -> str:
        return f"{self.path}:{self.dataset}" if self.dataset else self.path


def kind_of(path: str) -> str | None:
    name = os.path.basename(path).lower()
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(HDF5_SUFFIXES):
        return "hdf5"
    if _IDX_NAME.search(name):
        return "idx"
    return None


def parse_location(
    spec: str | os.PathLike, dataset: str | None, *, must_exist: bool, supported: str = SUPPORTED_FORMATS
) -> Location:
    """Split ``file.h5:/path`` forms and detect the kind. UsageError for unknown kinds and conflicting datasets."""
    path = os.fspath(spec)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    in_spec = None
    head, sep, tail = path.rpartition(":")
    # A literal file name containing ':' wins over the file.h5:/path form when it exists.
    if sep and head.lower().endswith(HDF5_SUFFIXES) and not (must_exist and os.path.exists(path)):
        path, in_spec = head, tail
    kind = kind_of(path)
    if kind is None:
        raise UsageError(f"don't know the format of {path!r} from its name; supported are {supported}")
    if must_exist and not os.path.exists(path):
        raise UsageError(f"input file {path!r} does not exist; check the path")
    if in_spec is not None and dataset is not None and _norm(in_spec) != _norm(dataset):
        raise UsageError(f"dataset given twice and differently: {in_spec!r} in {spec!r} and {dataset!r}; give it once")
    chosen = in_spec if in_spec is not None else dataset
    if chosen is not None and kind != "hdf5":
        raise UsageError(f"a dataset name ({chosen!r}) only applies to HDF5 files, not to {path!r}")
    if chosen is not None and _norm(chosen) == "/":
        raise UsageError(f"dataset name {chosen!r} names no dataset; give e.g. {path}:/data")
    return Location(path, kind, _norm(chosen) if chosen is not None else None)


def _norm(dataset: str) -> str:
    return "/" + dataset.strip("/")
