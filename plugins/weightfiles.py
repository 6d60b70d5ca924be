"""The built-in models' weight files: where they live, and their format (an .npz of integer arrays plus a
JSON document under the key ``config``), shared by the MLP and convolutional integer networks."""
from __future__ import annotations

import hashlib
import io
import json
from importlib.resources import files
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from bbarc.errors import ModelError

T = TypeVar("T")


def load_model_weights(model_id: str, weights: str | Path, loader: Callable[[object], T]) -> T:
    """``weights``: a file name shipped in ``plugins/weights`` or a path (e.g. a freshly exported file)."""
    path = weights if isinstance(weights, Path) else files("bbarc.plugins") / "weights" / weights
    try:
        return loader(path)
    except FileNotFoundError:
        raise ModelError(f"model {model_id!r}: weights file {path} is missing; reinstall bbarc") from None


def write_weights(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    arrays = dict(arrays, config=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    Path(path).write_bytes(buf.getvalue())


def read_weights(path) -> tuple[dict, dict[str, np.ndarray], str]:
    """Returns (JSON document, arrays, sha256 of the file's bytes). ``path``: a path or an importlib resource."""
    raw = (Path(path) if isinstance(path, str) else path).read_bytes()
    with np.load(io.BytesIO(raw)) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(arrays.pop("config").tobytes()), arrays, hashlib.sha256(raw).hexdigest()
