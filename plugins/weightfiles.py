"""The built-in models' weight files: where they live, their format (an .npz of integer arrays plus a JSON document
under the key ``config``), and ``WeightsFile``, the value a model holds: the file's bytes and their sha256. A model
pickles with its weights' bytes, so worker processes (or a Dask cluster) receive it by value."""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from functools import cached_property
from importlib.resources import files
from pathlib import Path

import numpy as np

from bbarc.errors import ModelError, UsageError


@dataclass(frozen=True, eq=False)
class WeightsFile:
    """The bytes of one weights file; parsed on first use."""

    data: bytes = field(repr=False)
    name: str = ""

    @classmethod
    def shipped(cls, name: str) -> "WeightsFile":
        """A weights file shipped in ``bbarc/plugins/weights``."""
        try:
            return cls((files("bbarc.plugins") / "weights" / name).read_bytes(), name)
        except FileNotFoundError:
            raise ModelError(f"weights file {name} is missing from the bbarc installation; reinstall bbarc") from None

    @classmethod
    def from_path(cls, path) -> "WeightsFile":
        try:
            return cls(Path(path).read_bytes(), str(path))
        except OSError as exc:
            raise UsageError(f"cannot read weights file {path}: {exc.strerror}") from None

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def contents(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON document, arrays)."""
        try:
            with np.load(io.BytesIO(self.data)) as z:
                arrays = {k: z[k] for k in z.files}
            return json.loads(arrays.pop("config").tobytes()), arrays
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"weights file {self.name or self.sha256[:16]} does not parse ({exc})") from None

    def __getstate__(self):
        return {"data": self.data, "name": self.name}  # not the parsed arrays: the bytes are smaller

    def __setstate__(self, state) -> None:
        object.__setattr__(self, "data", state["data"])
        object.__setattr__(self, "name", state["name"])


def find_shipped(names: tuple[str, ...], sha256: str) -> WeightsFile | None:
    """The shipped file among ``names`` whose sha256 is ``sha256``, if any."""
    for name in names:
        weights = WeightsFile.shipped(name)
        if weights.sha256 == sha256:
            return weights
    return None


def write_weights(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    arrays = dict(arrays, config=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    Path(path).write_bytes(buf.getvalue())


def read_weights(path) -> tuple[dict, dict[str, np.ndarray], str]:
    """Returns (JSON document, arrays, sha256 of the file's bytes). ``path``: a path or a shipped file name."""
    weights = WeightsFile.from_path(path) if Path(str(path)).exists() else WeightsFile.shipped(str(path))
    return (*weights.contents, weights.sha256)
