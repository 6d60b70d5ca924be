"""numba's ``njit``, applied on a kernel's first call: modules of kernels import without numba.

Importing numba and loading compiled kernels costs a large part of a second, which commands that never code
(``bbarc info``, ``models``, ``verify``, ``--help``) must not pay. A module's kernels call one another by global
name, and numba resolves those names when it compiles, so on the first call of any of them every kernel of the
module is handed to numba at once and its module global replaced by the dispatcher; later calls go to numba
directly. The kernels' code is numba's as written: only the moment ``njit`` is applied changes.

numba compiles a kernel on first use unless its on-disk cache (``cache=True``) holds it: after an install, or
with a cache folder that cannot be written, the first command would stall for seconds without a word. So when
the first kernel called in a process has no cached compilation, one line on stderr says what is happening.
"""
from __future__ import annotations

import functools
import sys
import threading

#: printed (once per process) when the first kernel called has to be compiled; ``{seconds}`` is an estimate
NOTICE = "bbarc: compiling the coder's kernels for this machine (once; up to about {seconds} s)"
COMPILE_SECONDS = 10  # a rough upper figure for the notice (the built-in models, compress and decompress)

_noticed = False
_notice_lock = threading.Lock()


class KernelGroup:
    """The kernels of one module: ``jit = KernelGroup(globals())(cache=True)`` replaces ``numba.njit(cache=True)``."""

    def __init__(self, namespace: dict):
        self._namespace = namespace
        self._pending: list[_Pending] = []
        self._bound: dict[str, object] | None = None
        self._lock = threading.Lock()
        self.checked = False  # whether the first call has looked for numba's cache

    def __call__(self, **options):
        def decorate(func):
            kernel = _Pending(self, func, options)
            self._pending.append(kernel)
            return kernel

        return decorate

    def bind(self) -> dict[str, object]:
        """Every kernel of the module as a numba dispatcher (numba compiles or loads each on its first call)."""
        if self._bound is None:
            with self._lock:
                if self._bound is None:
                    import numba

                    _init_target_without_blas()
                    bound = {k.__name__: numba.njit(**k.options)(k.py_func) for k in self._pending}
                    self._namespace.update(bound)  # before any compilation: kernels find each other here
                    self._bound = bound
        return self._bound


class _Pending:
    """A kernel not yet handed to numba; calling it binds its module's kernels and calls the dispatcher."""

    def __init__(self, group: KernelGroup, func, options: dict):
        functools.update_wrapper(self, func)
        self.py_func, self.options, self._group = func, options, group

    def __call__(self, *args):
        dispatcher = self._group.bind()[self.__name__]
        first = not self._group.checked
        if first:
            self._group.checked = True
            _notice_if_uncached(dispatcher)
        try:
            return dispatcher(*args)
        finally:
            if first:
                # numba loads more libraries on a first compiled call (scipy's BLAS, with a thread pool of its
                # own), often inside a coding call: cap their threads from now on, as for any library loaded then
                from .execution import refresh_thread_cap

                refresh_thread_cap()


_BLAS = "scipy.linalg.cython_blas"


def _init_target_without_blas() -> None:
    """Initialise numba's CPU target (it does so itself before its first compilation or cache load) with scipy's
    BLAS module hidden. The target imports ``numba.np.arraymath``, which imports all of ``scipy.linalg`` (a third of
    a second) only to learn whether ``np.correlate`` may call BLAS; no kernel here does linear algebra. Hidden,
    numba's ``np.correlate``/``np.convolve`` in this process use their own loop; ``np.dot`` and the rest of
    ``numpy.linalg`` look for BLAS when they are compiled, and find it. Nothing is hidden when scipy's BLAS is
    loaded already (nothing to save), and any failure leaves numba to initialise as it would have."""
    if _BLAS in sys.modules:
        return
    sys.modules[_BLAS] = None  # an import of it raises ImportError while this entry is there
    try:
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()
    except Exception:  # numba's internals moved: it initialises on its own, scipy included
        pass
    finally:
        if _BLAS in sys.modules and sys.modules[_BLAS] is None:
            del sys.modules[_BLAS]


def is_cached(dispatcher) -> bool:
    """Whether numba's on-disk cache holds a compilation of ``dispatcher`` for this source file and numba (its
    index is present and not stale). Reads one small index file; any doubt counts as not cached."""
    cache = getattr(dispatcher, "_cache", None)
    try:
        return bool(cache._cache_file._load_index())
    except Exception:  # no cache (cache=False), no writable cache folder, or numba's internals moved
        return False


def _notice_if_uncached(dispatcher) -> None:
    """One line on stderr, at most once per process, when ``dispatcher`` (a group's first kernel called) is about
    to be compiled. Worker processes stay quiet: the process that started them has said it already."""
    global _noticed
    import multiprocessing

    with _notice_lock:
        if _noticed or is_cached(dispatcher):
            return
        _noticed = True
        if multiprocessing.parent_process() is None:
            print(NOTICE.format(seconds=COMPILE_SECONDS), file=sys.stderr, flush=True)
