"""Where the built-in models' weights live, and the error when one is missing."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Callable, TypeVar

from formats.errors import ModelError

T = TypeVar("T")


def load_model_weights(model_id: str, weights: str | Path, loader: Callable[[object], T]) -> T:
    """``weights``: a file name shipped in ``plugins/weights`` or a path (e.g. a freshly exported file)."""
    path = weights if isinstance(weights, Path) else files("plugins") / "weights" / weights
    try:
        return loader(path)
    except FileNotFoundError:
        raise ModelError(f"model {model_id!r}: weights file {path} is missing; reinstall bbarc") from None
