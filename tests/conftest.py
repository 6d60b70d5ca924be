from pathlib import Path

import numpy as np
import pytest

from tests.helpers import SAMPLE, load_sample  # noqa: F401 - other test modules import them from here too

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist() -> np.ndarray:
    """The first 1,000 MNIST test images (bundled with the package)."""
    return load_sample()


@pytest.fixture(scope="session")
def mnist_binary(mnist) -> np.ndarray:
    return (np.random.RandomState(0).random_sample(mnist.shape) < mnist / 255.0).astype(np.uint8)
