"""What several test modules share (tests import this, never one another)."""
import subprocess
import sys
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np

from bbarc.formats.idx import read_idx

SAMPLE = files("bbarc") / "samples" / "mnist-t10k-first1000-images-idx3-ubyte.gz"
ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"  # the real data sets, where the checkout has them


def load_sample() -> np.ndarray:
    """The 1,000 MNIST test images bundled with the package."""
    with as_file(SAMPLE) as path:
        return read_idx(path)


def cli(*args, check=True) -> subprocess.CompletedProcess:
    """Run the ``bbarc`` command line in a subprocess, as a user would (exit codes included)."""
    run = subprocess.run([sys.executable, "-m", "bbarc.cli", *map(str, args)], capture_output=True, text=True)
    if check and run.returncode != 0:
        raise AssertionError(f"bbarc {args} exited {run.returncode}: {run.stderr}")
    return run


def bound_model(model_id: str, shape=(28, 28), dtype="uint8"):
    """Built-in family ``model_id`` bound to items of ``shape``/``dtype`` (the model compress would use)."""
    from bbarc.model import ItemSpec
    from bbarc.registry import default_registry

    return default_registry().bind(model_id, ItemSpec(shape, dtype))
