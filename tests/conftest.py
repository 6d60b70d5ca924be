import gzip
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
SAMPLE = files("bbarc") / "samples" / "mnist-t10k-first1000-images-idx3-ubyte.gz"


def load_sample() -> np.ndarray:
    raw = gzip.decompress(SAMPLE.read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)


@pytest.fixture(scope="session")
def mnist() -> np.ndarray:
    """The first 1,000 MNIST test images (bundled with the package)."""
    return load_sample()


@pytest.fixture(scope="session")
def mnist_binary(mnist) -> np.ndarray:
    return (np.random.RandomState(0).random_sample(mnist.shape) < mnist / 255.0).astype(np.uint8)
