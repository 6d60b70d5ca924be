"""How coding work runs: thread limits for the coder, lockstep sizing, worker pools, and the one ordered
orchestration that compression and decompression share (``run_ordered``).

Nothing here knows about archives or models, so that every layer may use it; it imports only ``bbarc.errors``.
"""
from __future__ import annotations

import functools
import multiprocessing
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from typing import Any, TypeVar

from threadpoolctl import ThreadpoolController

from bbarc.errors import UsageError

G = TypeVar("G")
R = TypeVar("R")

# Memory one lockstep group of chunks may hold in items (per worker): more chains share each network call, but
# all their items sit in memory at once. A lockstep round's network outputs and codec parameters grow with the
# number of chains too (MAX_LOCKSTEP bounds them), and wider rounds make each int8 product more efficient and
# share each round's fixed costs among more items.
LOCKSTEP_BYTES = 64 << 20
MAX_LOCKSTEP = 512


def auto_lockstep(chunk_size: int, item_bytes: int, chunks: int | None = None, workers: int = 1) -> int:
    """How many chunks to code in lockstep: as many as fit in ``LOCKSTEP_BYTES`` of items, 1 to ``MAX_LOCKSTEP``;
    given the number of ``chunks`` and ``workers`` > 1, no more than leaves every worker a group."""
    width = int(min(MAX_LOCKSTEP, max(1, LOCKSTEP_BYTES // max(1, chunk_size * item_bytes))))
    if chunks is not None and workers > 1:
        width = min(width, max(1, -(-chunks // workers)))
    return width


def lockstep_groups(items: Iterable[G], lockstep: int) -> Iterator[list[G]]:
    """Consecutive lists of ``lockstep`` items (the last may be shorter), consumed lazily: the chunks coded
    together."""
    if not isinstance(lockstep, int) or lockstep < 1:
        raise UsageError(f"lockstep must be a positive integer, got {lockstep!r}")
    return _batched(iter(items), lockstep)


def _batched(items: Iterator[G], n: int) -> Iterator[list[G]]:
    group: list[G] = []
    for item in items:
        group.append(item)
        if len(group) == n:
            yield group
            group = []
    if group:
        yield group


def single_threaded(fn):
    """Run ``fn`` with the process's BLAS/OpenMP pools and torch's intra-op threads limited to one thread.

    The coder's network calls are small matrix products, one per item: multi-threaded BLAS (or OpenMP, which
    torch's int8 products use) makes them slower and spends more CPU time (see ``benchmarks/results/``), so coding
    runs them on one thread; use ``workers`` for parallelism. Exactness does not depend on this (see
    ``bbarc.plugins.intnet``). The limits hold only during the call: a library user's settings come back after
    it (see ``coding_threads``)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with coding_threads():
            return fn(*args, **kwargs)

    return wrapper


class _ThreadCap:
    """One process-wide cap, shared by every coding call in flight. The first call to enter sets it and the last
    to leave lifts it: save-and-restore per call would let two threads that overlap restore each other's
    ``1`` as the user's setting, and leave it capped for good.

    torch needs its own limit: threadpoolctl sets OpenMP's count for the calling thread only, and torch sets it
    back to its own default the first time it runs a parallel operation in a thread, so its products ran on all
    cores whatever threadpoolctl said. ``torch.set_num_threads`` is what torch itself reads.

    OpenMP counts are per thread: the cap is set, and lifted, in the threads that first enter and last leave. A
    thread that joins a cap already set gets torch's one thread only if it has not run torch before; and when
    calls in several threads overlap, the thread that set the cap may keep torch's count at 1 afterwards."""

    def __init__(self):
        self.lock = threading.RLock()
        self.depth = 0
        self.stack = ExitStack()
        self.seen_modules = -1
        self.torch_capped = False

    def enter(self) -> None:
        with self.lock:
            self.depth += 1
            if self.depth == 1:
                self.stack = ExitStack()
                self.seen_modules, self.torch_capped = -1, False
            self.refresh()

    def refresh(self) -> None:
        """Extend the cap (while one is set) to the libraries loaded since it was set: a model bound inside a
        coding call may import torch or another BLAS then."""
        with self.lock:
            if self.depth == 0 or self.seen_modules == len(sys.modules):
                return
            self.seen_modules = len(sys.modules)
            # torch first: with OpenMP, its count is OpenMP's, which the limit below would already have set to 1
            torch = sys.modules.get("torch")
            if not self.torch_capped and torch is not None and hasattr(torch, "set_num_threads"):
                before = torch.get_num_threads()
                torch.set_num_threads(1)
                self.stack.callback(torch.set_num_threads, before)
                self.torch_capped = True
            self.stack.enter_context(_thread_pools().limit(limits=1))

    def leave(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                self.stack.close()


_cap = _ThreadCap()


@contextmanager
def coding_threads():
    """Code on one thread (BLAS, OpenMP, torch) inside the block; nested and concurrent blocks share one cap,
    lifted when the last one ends."""
    _cap.enter()
    try:
        yield
    finally:
        _cap.leave()


def refresh_thread_cap() -> None:
    """Called by a plugin right after it loads a numerical library (torch), so that a coding call in progress
    caps it at once rather than from the next call on."""
    _cap.refresh()


_pools: tuple[int, ThreadpoolController] | None = None


def _thread_pools() -> ThreadpoolController:
    """The process's thread pools (BLAS, OpenMP). Finding them is slow next to one random-access read, which would
    pay it every time, so they are looked up again only after new modules (and so maybe new libraries) loaded."""
    global _pools
    if _pools is None or _pools[0] != len(sys.modules):
        _pools = (len(sys.modules), ThreadpoolController())
    return _pools[1]


def process_pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: forking a process that holds BLAS/numba threads can deadlock.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def in_order(pool: Executor, jobs: Iterable[tuple[Any, tuple]], max_in_flight: int) -> Iterator[tuple[Any, Any]]:
    """Submit ``(key, (fn, *args))`` jobs, yield ``(key, result)`` in submission order, keeping at most
    ``max_in_flight`` jobs (and so their data) alive at once. Jobs not yet started are cancelled on close."""
    pending: deque = deque()
    try:
        for key, (fn, *args) in jobs:
            pending.append((key, pool.submit(fn, *args)))
            while len(pending) >= max_in_flight:
                key0, future = pending.popleft()
                yield key0, future.result()
        while pending:
            key0, future = pending.popleft()
            yield key0, future.result()
    finally:
        for _, future in pending:
            future.cancel()


def run_ordered(
    groups: Iterable[G],
    *,
    local: Callable[[G, Callable[[int], None] | None], R],
    remote: Callable[[G], tuple],
    size: Callable[[G], int],
    workers: int = 1,
    executor: Executor | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[G, R]]:
    """Do the work of each group and yield ``(group, result)`` in the order of ``groups``.

    Without a pool (``workers == 1`` and no ``executor``) each group runs here: ``local(group, tick)``. Otherwise
    ``remote(group)`` gives a picklable ``(fn, *args)`` call, submitted to ``executor`` or to a spawned process
    pool of ``workers``; at most ``2 * max(workers, 2)`` groups are in flight, so memory stays bounded however long
    ``groups`` is (it is consumed lazily). ``progress(k)`` advances by ``size(group)`` per group in all: ``local``
    may report finer steps through ``tick`` (None without ``progress``), and what it left out is reported when
    its group is done.

    Close it (``contextlib.closing``) when the consumer may stop early, so that the pool shuts down then."""
    if not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive integer, got {workers!r}")
    with ExitStack() as stack:
        pool = executor or (stack.enter_context(process_pool(workers)) if workers > 1 else None)
        if pool is None:
            for group in groups:
                done = [0]

                def tick(k: int) -> None:
                    done[0] += k
                    if progress:
                        progress(k)

                result = local(group, tick if progress else None)
                if progress and size(group) > done[0]:
                    progress(size(group) - done[0])
                yield group, result
        else:
            # Closed before the pool (the stack unwinds in reverse), so queued jobs are cancelled, not waited for.
            results = stack.enter_context(closing(in_order(pool, ((g, remote(g)) for g in groups),
                                                           2 * max(workers, 2))))
            for group, result in results:
                if progress:
                    progress(size(group))
                yield group, result
