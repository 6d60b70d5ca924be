import os

import numpy as np
import pytest

from tests.helpers import load_sample

# bbarc's tests run isolated from installed third-party plugins (the registry loads only the built-ins); this
# reaches the subprocesses the tests start too. Plugin tests build their own registries.
os.environ["BBARC_LOAD_PLUGINS"] = ""


@pytest.fixture(scope="session")
def mnist() -> np.ndarray:
    """The first 1,000 MNIST test images (bundled with the package)."""
    return load_sample()


@pytest.fixture(scope="session")
def mnist_binary(mnist) -> np.ndarray:
    return (np.random.RandomState(0).random_sample(mnist.shape) < mnist / 255.0).astype(np.uint8)
