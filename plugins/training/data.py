"""Where the training scripts find MNIST: ``--data DIR`` or ``$BBARC_DATA``, a folder holding the IDX files
(``train-images-idx3-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``). Nothing here knows where a checkout keeps them."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from bbarc.formats.idx import read_idx

DATA_ENV = "BBARC_DATA"
TRAIN, TEST = "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"


def add_data_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", type=Path, default=os.environ.get(DATA_ENV) or None,
                    required=not os.environ.get(DATA_ENV),
                    help=f"folder holding MNIST's IDX files (default: ${DATA_ENV})")


def load_images(data: Path, name: str) -> np.ndarray:
    """The images of one MNIST IDX file, flattened: (N, rows * cols) uint8."""
    images = read_idx(Path(data) / name)
    return images.reshape(len(images), -1)
