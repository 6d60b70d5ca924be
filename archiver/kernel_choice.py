"""Which kernels code a call: the compiled ones (``bbarc.kernels``) or the light ones (``bbarc.kernels_py``).

Both leave identical integers (tests/test_lite.py), so the choice is about speed only, and this is the one place
it is made. The compiled kernels cost a fixed price in each fresh process (importing numba, initialising LLVM),
then little per symbol; the light ones cost nothing to load and far more per symbol. So, in order:

1. ``BBARC_KERNELS=light`` or ``=compiled`` forces one (tests, benchmarks).
2. Compiled once numba is loaded in this process (the price is paid), or once this process has spent
   ``LIGHT_BUDGET_S`` CPU seconds in light kernels (about that price): the ski-rental rule, never worse than about
   twice the better choice in hindsight, for work whose size nobody declared.
3. Compiled for a job declared (``job``, as the chain does) to code more than ``LIGHT_MAX_ITEMS`` items: bulk
   coding pays the price at once instead of spending the budget first.
4. Light otherwise: decoding a few items (``bbarc get``, ``archive[i]``) imports neither numba nor LLVM.
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

LIGHT_BUDGET_S = 0.6
LIGHT_MAX_ITEMS = 100
KERNELS_ENV = "BBARC_KERNELS"
_light_spent = [0.0]
_job = threading.local()  # the items the calling thread's current job codes (threads decode independently)


@contextmanager
def job(items: int):
    """Declare that the coding calls inside (this thread's) code about ``items`` items."""
    outer = getattr(_job, "items", None)
    _job.items = items
    try:
        yield
    finally:
        _job.items = outer


def compiled_now() -> bool:
    """Whether the rule above picks the compiled kernels for a call now."""
    mode = os.environ.get(KERNELS_ENV, "auto")
    if mode in ("light", "compiled"):
        return mode == "compiled"
    if "numba" in sys.modules or _light_spent[0] >= LIGHT_BUDGET_S:
        return True
    items = getattr(_job, "items", None)
    return items is not None and items > LIGHT_MAX_ITEMS


def kernel(name: str) -> Callable:
    """The kernel ``name`` (a function of ``bbarc.kernels``) to run now."""
    if compiled_now():
        from . import kernels

        return getattr(kernels, name)
    return partial(_timed, getattr(kernels_py, name))


def _timed(fn: Callable, *args):
    start = time.thread_time()  # CPU time: on a busy machine wall time would run the budget out early
    try:
        return fn(*args)
    finally:
        _light_spent[0] += time.thread_time() - start
