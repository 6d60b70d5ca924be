"""Which arrays bbarc accepts (shape and dtype rules) and how they are normalized for the coder."""

from __future__ import annotations

import math

import numpy as np

from bbarc.errors import UsageError

# bool, signed and unsigned integers, floats: fixed-size numbers with an exact byte representation.
SUPPORTED_KINDS = "biuf"


def check_dtype(dtype: np.dtype, where: str) -> np.dtype:
    """``dtype`` itself if bbarc can store it; UsageError naming ``where`` otherwise."""
    dtype = np.dtype(dtype)
    if dtype.kind not in SUPPORTED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UsageError(
            f"{where} has dtype {dtype}, which bbarc cannot store; supported are bool, integers and floats "
            "(convert first, e.g. with arr.astype(np.float32))"
        )
    return dtype


def native(dtype: np.dtype) -> np.dtype:
    return np.dtype(dtype).newbyteorder("=")


def check_shape(shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """The shape as a tuple of ints; UsageError for 0-dim data or data without any values."""
    try:
        shape = tuple(int(n) for n in shape)
    except TypeError:
        raise UsageError(f"{where}: shape must be a sequence of ints, got {shape!r}") from None
    if len(shape) == 0:
        raise UsageError(f"{where} is 0-dimensional (a single value); the first axis must count the items")
    if any(n < 0 for n in shape):
        raise UsageError(f"{where}: shape {shape} has negative sizes")
    if shape[0] == 0:
        raise UsageError(f"{where} is empty: it has 0 items (shape {shape})")
    if math.prod(shape) == 0:
        raise UsageError(f"{where} is empty: its items hold no values (shape {shape})")
    return shape


def native_copy(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A C-ordered copy in native byte order, owning its memory (never a view into a file)."""
    return np.array(array, dtype=native(dtype), order="C", copy=True)
