"""The PyTorch side of ``bbarc.data``: ``ShuffledArchive`` as a ``torch.utils.data.IterableDataset``.

Outside ``bbarc.plugins`` this is the one module that imports torch (the layering contract in pyproject.toml
says so): ``bbarc.data`` loads it only when a ``ShuffledArchive`` is made where torch is installed, so that
``bbarc.data`` itself, and everything below it, runs without torch. A DataLoader treats a dataset as iterable
only if it is an instance of ``IterableDataset``, and tells each worker process which worker it is through
``get_worker_info``: those two things are all this adds.
"""
from __future__ import annotations

import functools

from torch.utils.data import IterableDataset, get_worker_info


@functools.cache
def iterable_dataset(base: type) -> type:
    """``base`` (``bbarc.data.ShuffledArchive``), made a subclass of ``IterableDataset`` whose iteration takes the
    calling DataLoader worker's share. Made once per process; named as ``base``, which also pickles it (by its
    arguments: ``ShuffledArchive.__reduce__``)."""

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    return type(base.__name__, (base, IterableDataset), {
        "_worker": _worker, "__doc__": base.__doc__, "__module__": base.__module__, "__qualname__": base.__qualname__,
    })
