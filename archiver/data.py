"""Training straight from an archive: datasets for PyTorch's ``DataLoader``, or for any training loop.

``ShuffledArchive`` (iterable) is the one to train with: one pass per epoch in a shuffled order that decodes
each chunk once. Its chunks come in a random order, ``buffer_chunks`` of them are decoded together (in lockstep,
sharing each network call: see ``Archive.decode_chunks``) and their items are shuffled together before they are
yielded. The chunks are split between distributed ranks and between a DataLoader's worker processes, each of
which opens its own reader; ``seed`` and ``set_epoch`` fix the order, and ``state_dict``/``load_state_dict``
resume an epoch after the samples already seen.

``ArchiveDataset`` (map-style, ``ds[i]``) reads items at random, and a random item costs the decoding of part of
its chunk (the items after it): it suits evaluation, small subsets and in-order reading, not shuffled epochs.

``import bbarc.data`` loads neither torch nor the coder: the coder (``bbarc.api``) is loaded when a dataset
opens its archive, and torch, where it is installed, when a ``ShuffledArchive`` is made, by ``bbarc.torch_data``,
which makes it an instance of torch's ``IterableDataset``: that is how a DataLoader tells an iterable dataset
from a map-style one, and how the dataset learns which worker it runs in. Without torch it is a plain iterable.
"""
from __future__ import annotations

import importlib.util
import multiprocessing
import operator
import os
from collections.abc import Callable, Iterator

import numpy as np

from bbarc.errors import UsageError


class _Opened:
    """The archive at ``path``, opened once per process: a DataLoader worker opens its own reader, also when it
    was forked from a process that had one open, and checks it is the archive the dataset was made for (the
    file may have been replaced meanwhile)."""

    def __init__(self, path: str, fingerprint: str, cache_chunks: int):
        self.path, self.fingerprint, self.cache_chunks = path, fingerprint, cache_chunks
        self._archive, self._pid = None, None

    def get(self):
        if self._archive is None or self._pid != os.getpid():
            from bbarc import api

            if self._archive is not None:
                self._archive.close()  # this process's copy of the parent's descriptor
            archive = api.Archive(self.path, cache_chunks=self.cache_chunks)
            archive.check_fingerprint(self.fingerprint)
            self._archive, self._pid = archive, os.getpid()
        return self._archive

    def __getstate__(self):
        return {"path": self.path, "fingerprint": self.fingerprint, "cache_chunks": self.cache_chunks}

    def __setstate__(self, state) -> None:
        self.__init__(**state)


def _survey(path, labels: bool):
    """What a dataset needs to know of an archive, from its index alone: (item count of each chunk, fingerprint,
    the lockstep size reads use). The archive is closed again: the process that makes a dataset need not read."""
    from bbarc import api
    from bbarc.execution import auto_lockstep

    with api.open(path) as archive:
        if labels and "labels" not in archive.metadata.side:
            raise UsageError(f"{archive.path} stores no labels (compress it with labels=... / --labels), so a "
                             f"dataset over it cannot return (item, label) pairs; use labels=False")
        sizes = np.array([c.item_count for c in archive.chunks], dtype=np.int64)
        meta = archive.metadata
        return sizes, archive.fingerprint, auto_lockstep(meta.chunk_size, meta.item_spec.item_bytes)


def _checked(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class ArchiveDataset:
    """Map-style dataset over the archive at ``path``: ``ds[i]`` is item ``i`` (a numpy array), or ``(item, label)``
    with ``labels=True``; ``transform(item)`` is applied to each item when given. Random access (see the module's
    docstring): ``cache_chunks`` decoded chunks are kept per process. Works with ``DataLoader`` as a map-style
    dataset; each worker opens its own reader."""

    def __init__(self, path, labels: bool = False, transform: Callable | None = None, cache_chunks: int = 2):
        if transform is not None and not callable(transform):
            raise UsageError(f"transform must be callable, got {transform!r}")
        sizes, fingerprint, _ = _survey(path, labels)
        self.labels, self.transform, self._len = bool(labels), transform, int(sizes.sum())
        self._archive = _Opened(str(path), fingerprint, _checked(cache_chunks, "cache_chunks", 0))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index):
        try:
            i = operator.index(index)
        except TypeError:
            raise UsageError(f"index an ArchiveDataset with an int, not {type(index).__name__}") from None
        if not -self._len <= i < self._len:
            # IndexError, not UsageError: iterating by __getitem__ (Python's old protocol) stops on it
            raise IndexError(f"item {i} is out of range: the dataset holds {self._len} items")
        archive = self._archive.get()
        item = archive[i]
        if self.transform is not None:
            item = self.transform(item)
        return (item, archive.side_data("labels", i)) if self.labels else item


class ShuffledArchive:
    """Iterable dataset over the archive at ``path``: each epoch yields every item once (``(item, label)`` with
    ``labels=True``; ``transform(item)`` applied when given), in an order fixed by ``seed`` and the epoch
    (``set_epoch``), decoding each chunk once (see the module's docstring).

    ``buffer_chunks``: chunks decoded and shuffled together, per worker (default: as many as reads decode in
    lockstep); more mixes better and shares network calls more, and all their items sit in memory.
    ``shuffle=False``: chunks and items in archive order. ``rank``/``world_size``: this process's share in
    distributed training (default: the ``RANK``/``WORLD_SIZE`` environment variables torchrun sets, else 0/1);
    ranks get disjoint chunks, so their sample counts may differ by less than two chunks' items (``len`` says how
    many this rank gets; DistributedDataParallel takes uneven inputs under its ``join`` context). ``batch_size``:
    the DataLoader's batch size; with several workers, resuming mid-epoch needs it to know which worker yielded
    the samples already seen (a DataLoader takes whole batches from its workers in turn).

    With torch installed, a ``ShuffledArchive`` is also a ``torch.utils.data.IterableDataset``; each DataLoader
    worker takes its share of this rank's chunks. Elsewhere ``samples(worker, workers)`` yields one worker's share.
    """

    def __new__(cls, *args, **kwargs):
        if cls is ShuffledArchive and importlib.util.find_spec("torch") is not None:
            from bbarc import torch_data

            cls = torch_data.iterable_dataset(ShuffledArchive)
        return super().__new__(cls)

    def __init__(self, path, labels: bool = False, transform: Callable | None = None, seed: int = 0,
                 shuffle: bool = True, buffer_chunks: int | None = None, rank: int | None = None,
                 world_size: int | None = None, batch_size: int = 1):
        if transform is not None and not callable(transform):
            raise UsageError(f"transform must be callable, got {transform!r}")
        self._config = dict(path=str(path), labels=labels, transform=transform, seed=seed, shuffle=shuffle,
                            buffer_chunks=buffer_chunks, rank=rank, world_size=world_size, batch_size=batch_size)
        self._sizes, fingerprint, lockstep = _survey(path, labels)
        self.labels, self.transform, self.shuffle = bool(labels), transform, bool(shuffle)
        self.seed = _checked(seed, "seed", 0)
        self.buffer_chunks = lockstep if buffer_chunks is None else _checked(buffer_chunks, "buffer_chunks", 1)
        self.world_size = _checked(int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size,
                                   "world_size", 1)
        self.rank = _checked(int(os.environ.get("RANK", 0)) if rank is None else rank, "rank", 0)
        if self.rank >= self.world_size:
            raise UsageError(f"rank {self.rank} does not exist among world_size {self.world_size} ranks")
        self.batch_size = _checked(batch_size, "batch_size", 1)
        # [epoch, resumed epoch (-1: none), samples this rank had seen in it], in shared memory, so that
        # set_epoch and load_state_dict reach DataLoader workers that outlive an epoch (persistent_workers)
        self._state = multiprocessing.RawArray("q", [0, -1, 0])
        self._archive = _Opened(str(path), fingerprint, 0)  # no cache: each chunk is decoded once per epoch

    # -- the order ----------------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self._state[0]

    def set_epoch(self, epoch: int) -> None:
        """Take epoch ``epoch``'s order (call it before each epoch, in every rank); DataLoader workers follow,
        also persistent ones."""
        self._state[0] = _checked(epoch, "epoch", 0)

    def chunk_order(self, worker: int = 0, workers: int = 1, epoch: int | None = None) -> list[int]:
        """The chunks worker ``worker`` of ``workers`` decodes in ``epoch`` (default: the current one), in order:
        the epoch's permutation of all chunks, split between ranks, then between this rank's workers, by turns."""
        order = np.arange(len(self._sizes))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch]).permutation(order)
        return order[self.rank::self.world_size][worker::workers].tolist()

    def __len__(self) -> int:
        """Samples this rank yields in the current epoch (after a resumed epoch's samples already seen)."""
        return int(self._sizes[self.chunk_order()].sum()) - self._seen()

    def _seen(self, epoch: int | None = None) -> int:
        return self._state[2] if self._state[1] == (self.epoch if epoch is None else epoch) else 0

    # -- iteration ----------------------------------------------------------------------------------------
    def _worker(self) -> tuple[int, int]:
        """(worker id, workers) of the process iterating; the torch adapter asks the DataLoader."""
        return 0, 1

    def __iter__(self) -> Iterator:
        return self.samples(*self._worker())

    def samples(self, worker: int = 0, workers: int = 1) -> Iterator:
        """Worker ``worker``'s share of this rank's samples of the current epoch, in order, after those a
        resumed epoch had already seen; chunks wholly seen are not decoded."""
        if not 0 <= _checked(worker, "worker", 0) < _checked(workers, "workers", 1):
            raise UsageError(f"worker {worker} does not exist among {workers} workers")
        epoch = self.epoch  # read once: the main process may set the next one while this worker still runs
        chunks = self.chunk_order(worker, workers, epoch)
        skip = worker_shares([int(self._sizes[self.chunk_order(w, workers, epoch)].sum()) for w in range(workers)],
                             self._seen(epoch), self.batch_size)[worker]
        for g, start in enumerate(range(0, len(chunks), self.buffer_chunks)):
            group = chunks[start:start + self.buffer_chunks]
            size = int(self._sizes[group].sum())
            if skip >= size:
                skip -= size
                continue
            order = np.arange(size)
            if self.shuffle:
                order = np.random.default_rng([self.seed, epoch, self.rank, worker, g]).permutation(size)
            yield from self._buffer(group, order[skip:])
            skip = 0

    def _buffer(self, group: list[int], order: np.ndarray) -> Iterator:
        """The items (and labels) of chunks ``group``, decoded together, at positions ``order``."""
        decoded = self._archive.get().decode_chunks(group)
        items = np.concatenate([d.items for d in decoded])[order]  # a writable copy, in the buffer's order
        labels = np.concatenate([d.side["labels"] for d in decoded])[order] if self.labels else None
        del decoded
        transform = self.transform
        for k in range(len(order)):
            item = items[k] if transform is None else transform(items[k])
            yield (item, labels[k]) if labels is not None else item

    # -- resuming -----------------------------------------------------------------------------------------
    def state_dict(self, samples: int) -> dict:
        """Where this rank stands once its loader has yielded ``samples`` samples (items, not batches) in this
        iteration of the current epoch: save it with a checkpoint, and give it to ``load_state_dict`` to go on."""
        seen = self._seen() + _checked(samples, "samples", 0)
        return {"epoch": self.epoch, "samples": seen, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size, "batch_size": self.batch_size,
                "fingerprint": self._archive.fingerprint}

    def load_state_dict(self, state: dict) -> None:
        """Resume from ``state_dict``'s result: takes its epoch, and the iterations of that epoch skip the samples
        already seen (with the same number of DataLoader workers as then). The archive, seed, ranks and batch
        size must be the ones the state was saved with."""
        for key in ("seed", "rank", "world_size", "batch_size", "fingerprint"):
            mine = self._archive.fingerprint if key == "fingerprint" else getattr(self, key)
            if state.get(key) != mine:
                raise UsageError(f"this state was saved with {key} {state.get(key)!r}, but this dataset has "
                                 f"{mine!r}: resuming would not give the samples that were left")
        epoch, seen = _checked(state["epoch"], "epoch", 0), _checked(state["samples"], "samples", 0)
        self._state[1] = -1
        self.set_epoch(epoch)
        if seen > len(self):
            raise UsageError(f"the state has seen {seen} samples, but epoch {epoch} holds {len(self)}")
        self._state[1], self._state[2] = epoch, seen

    def __reduce__(self):
        # Rebuilt from its arguments where unpickled (a DataLoader worker under spawn): the class may be made on
        # the fly (bbarc.torch_data), and the reader is opened there anyway. A worker being started shares the
        # epoch and resume point's memory; any other copy takes their values.
        spawning = multiprocessing.context.get_spawning_popen() is not None
        return _rebuild, (self._config, self._state if spawning else list(self._state))

    def __repr__(self) -> str:
        return (f"ShuffledArchive({self._config['path']!r}, items={int(self._sizes.sum())}, "
                f"chunks={len(self._sizes)}, epoch={self.epoch}, rank={self.rank}/{self.world_size})")


def _rebuild(config: dict, state) -> ShuffledArchive:
    dataset = ShuffledArchive(**config)
    if isinstance(state, list):
        dataset._state[:] = state
    else:
        dataset._state = state
    return dataset


def worker_shares(totals: list[int], seen: int, batch_size: int) -> list[int]:
    """How many of the first ``seen`` samples came from each worker, when worker ``w`` yields ``totals[w]``: a
    DataLoader takes a batch from each worker in turn, starting each epoch at worker 0 and skipping workers that
    have run out, and each worker batches its own samples (the last batch may be short)."""
    done = [0] * len(totals)
    while seen > 0:
        before = seen
        for w, total in enumerate(totals):
            take = min(batch_size, total - done[w], seen)
            done[w] += take
            seen -= take
        if seen == before:
            raise UsageError(f"{sum(done) + seen} samples seen, but the workers yield {sum(totals)}")
    return done
