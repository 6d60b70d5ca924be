"""The example's data: MNIST digits shrunk to 8x8 and binarised, made from the sample bbarc ships."""
from __future__ import annotations

from importlib.resources import as_file, files

import numpy as np

from bbarc.formats.idx import read_idx

SAMPLE = "mnist-t10k-first1000-images-idx3-ubyte.gz"
THRESHOLD = 96  # a pixel is 1 where the mean of its 3x3 block of the 24x24 centre is at least this


def binary_8x8(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 digits -> (N, 8, 8) uint8 in {0, 1}: centre crop, 3x3 block means, threshold."""
    blocks = images[:, 2:26, 2:26].astype(np.int64).reshape(-1, 8, 3, 8, 3).sum(axis=(2, 4))
    return (blocks >= 9 * THRESHOLD).astype(np.uint8)


def sample_items() -> np.ndarray:
    """The 1,000 MNIST test images bbarc ships, as 8x8 binary items (the first 800 trained the weights)."""
    with as_file(files("bbarc") / "samples" / SAMPLE) as path:
        return binary_8x8(read_idx(path))
