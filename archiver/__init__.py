"""bbarc: lossless dataset archiving with bits-back ANS coding and model plugins.

    import bbarc
    bbarc.compress("t10k-images-idx3-ubyte.gz", "mnist.bbarc", model="mnist-vae", chunk_size=1000)
    with bbarc.open("mnist.bbarc") as a:
        a[0], a[10:20], a.chunk(3), a.metadata

The names below are loaded on first use (module ``__getattr__``), so ``import bbarc.formats`` or ``bbarc info``
do not pay for the coder, numba or torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Archive": "bbarc.api", "open": "bbarc.api", "decompress": "bbarc.api",
    "CompressResult": "bbarc.pipeline", "compress": "bbarc.pipeline", "recover": "bbarc.recovery",
    "BbarcError": "bbarc.errors", "CodingError": "bbarc.errors", "CorruptArchiveError": "bbarc.errors",
    "ModelError": "bbarc.errors", "OutputError": "bbarc.errors", "UsageError": "bbarc.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bbarc' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
