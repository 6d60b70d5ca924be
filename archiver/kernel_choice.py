"""Which kernels code a call: the compiled ones (``bbarc.kernels``) or the light ones (``bbarc.kernels_py``).

Both leave identical integers (tests/test_lite.py), so the choice is about speed only, and this is the one place
it is made. The compiled kernels cost a fixed price in each fresh process (importing numba, initialising LLVM),
then little per symbol; the light ones cost nothing to load and far more per symbol (how much depends on the
model). So, in order:

1. ``BBARC_KERNELS=light`` or ``=compiled`` forces one (tests, benchmarks).
2. Compiled once numba is loaded in this process (the price is paid), or once this process has spent
   ``LIGHT_BUDGET_S`` CPU seconds in light kernels (about that price): the ski-rental rule, never worse than
   about twice the better choice in hindsight.
3. Within a job whose size the caller declares (``job``; the chain declares the items it codes and ``advance``\\s
   per item): light while its remaining items, at the light cost per item measured so far in it (before any,
   ``LIGHT_ITEM_FLOOR_S``), fit in what is left of the budget; compiled from then on. Bulk coding goes compiled
   at once or after its first items; decoding a few items (``bbarc get``, ``archive[i]``) stays light, and so
   imports neither numba nor LLVM.
4. Light otherwise (undeclared work), with rule 2 as the net.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from functools import partial
from typing import Callable

from . import kernels_py

LIGHT_BUDGET_S = 0.8  # CPU seconds: about the compiled kernels' price in a fresh process, measured (benchmarks/results)
# Before a job's first item is measured, its light cost per item is taken to be this floor (the built-in models'
# cheapest is about twice it), so that a job too large even at the floor goes compiled at once.
LIGHT_ITEM_FLOOR_S = 0.0005
KERNELS_ENV = "BBARC_KERNELS"
_light_spent = [0.0]
_local = threading.local()  # the calling thread's current job (threads code independently)


class Job:
    """A declared amount of work: ``items`` to code, ``done`` so far, ``spent`` CPU seconds of light kernels."""

    __slots__ = ("items", "done", "spent")

    def __init__(self, items: int):
        self.items, self.done, self.spent = items, 0, 0.0


@contextmanager
def job(items: int):
    """Declare that the coding calls inside (on this thread) code ``items`` items; ``advance`` counts them."""
    outer = getattr(_local, "job", None)
    _local.job = Job(items)
    try:
        yield _local.job
    finally:
        _local.job = outer


def advance(items: int = 1) -> None:
    """``items`` more items of the current job are coded."""
    current = getattr(_local, "job", None)
    if current is not None:
        current.done += items


def compiled_now() -> bool:
    """Whether the rule above picks the compiled kernels for a call now."""
    mode = os.environ.get(KERNELS_ENV, "auto")
    if mode in ("light", "compiled"):
        return mode == "compiled"
    if "numba" in sys.modules or _light_spent[0] >= LIGHT_BUDGET_S:
        return True
    current = getattr(_local, "job", None)
    if current is None:
        return False
    per_item = current.spent / current.done if current.done else LIGHT_ITEM_FLOOR_S
    return (current.items - current.done) * per_item > LIGHT_BUDGET_S - _light_spent[0]


def kernel(name: str) -> Callable:
    """The kernel ``name`` (a function of ``bbarc.kernels``) to run now."""
    if compiled_now():
        from . import kernels  # (a kernel's first call caps the threads of what numba loads: bbarc.jit)

        return getattr(kernels, name)
    return partial(_timed, getattr(kernels_py, name))


def _timed(fn: Callable, *args):
    start = time.thread_time()  # CPU time: on a busy machine wall time would run the budget out early
    try:
        return fn(*args)
    finally:
        spent = time.thread_time() - start
        _light_spent[0] += spent
        current = getattr(_local, "job", None)
        if current is not None:
            current.spent += spent
