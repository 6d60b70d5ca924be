"""A stack (LIFO) rANS coder: 64-bit head, 32-bit words, exact integer arithmetic.

``AnsStack`` is the mutable message; codecs (``bbarc.codecs``) are immutable values that push symbols onto it
and pop them off. Popping more information than was ever pushed raises ``CodingError`` instead of inventing
bits: bits-back coding must start from real "clean bits" (the chunk header, see ``bbarc.chain``).
"""
from __future__ import annotations

import math

import numpy as np

from bbarc.errors import CodingError, CorruptArchiveError

from . import kernels

_LOW = 1 << 32


class AnsLanes:
    """Several independent rANS messages held in one pair of arrays: row j of ``states`` (head, word count) and of
    ``bufs`` is message j. Chunks coded in lockstep each keep their own message (so each decodes alone), while
    one kernel call codes a row of symbols for every one of them (``run_push``/``run_pop`` with lane ids)."""

    __slots__ = ("states", "bufs")

    def __init__(self, count: int, capacity: int = 1024):
        self.states = np.zeros((count, 2), dtype=np.uint64)
        self.states[:, 0] = _LOW
        self.bufs = np.empty((count, max(capacity, 16)), dtype=np.uint32)

    def __len__(self) -> int:
        return len(self.states)

    def stack(self, lane: int) -> "AnsStack":
        """Message ``lane`` as an ``AnsStack`` (sharing this storage), for codecs that code one message."""
        stack = object.__new__(AnsStack)
        stack._lanes, stack._lane = self, lane
        return stack

    def reset(self, lane: int) -> None:
        self.states[lane] = (_LOW, 0)

    def reserve(self, words: int, lanes=slice(None)) -> None:
        """Room for ``words`` more words in each of ``lanes`` (all lanes grow together: one array)."""
        need = int(self.states[lanes, 1].max(initial=0)) + words
        if need > self.bufs.shape[1]:
            grown = np.empty((len(self), max(need, 2 * self.bufs.shape[1])), dtype=np.uint32)
            used = int(self.states[:, 1].max(initial=0))
            grown[:, :used] = self.bufs[:, :used]
            self.bufs = grown

    def run_push(self, kernel, lanes: np.ndarray, n: int, *args) -> np.ndarray:
        """``kernel(states, bufs, lanes, *args, status)`` pushes ``n`` symbols onto each lane in ``lanes``; returns
        ``status`` (per lane: -1, or the index of a symbol of probability 0, which was not coded)."""
        self.reserve(n, lanes)  # each pushed symbol emits at most one word
        status = np.empty(len(lanes), dtype=np.int64)
        kernel(self.states, self.bufs, lanes, *args, status)
        return status

    def run_pop(self, kernel, lanes: np.ndarray, out: np.ndarray, *args) -> np.ndarray:
        """``kernel(states, bufs, lanes, out, *args, status)`` pops ``out.shape[1]`` symbols off each lane; returns
        ``status`` (per lane: -1, or the index of the symbol whose pop found too few bits; that lane is left
        part-popped and must be discarded)."""
        status = np.empty(len(lanes), dtype=np.int64)
        kernel(self.states, self.bufs, lanes, out, *args, status)
        return status

    @classmethod
    def from_messages(cls, messages: list[bytes]) -> "AnsLanes":
        """Lanes holding the messages written by ``AnsStack.to_bytes``, in order."""
        words = [message_words(m) for m in messages]
        lanes = cls(len(messages), max((len(w) for w in words), default=0))
        for j, w in enumerate(words):
            lanes.states[j] = (int(w[0]) | (int(w[1]) << 32), len(w) - 2)
            lanes.bufs[j, : len(w) - 2] = w[2:][::-1]
        return lanes


def message_words(data: bytes) -> np.ndarray:
    """The 32-bit words of a message written by ``AnsStack.to_bytes``, checked; CorruptArchiveError if not one."""
    if len(data) < 8 or len(data) % 4:
        raise CorruptArchiveError(f"an ANS message must be 8 + 4k bytes long, got {len(data)} bytes")
    words = np.frombuffer(data, dtype="<u4")
    if (int(words[0]) | (int(words[1]) << 32)) < _LOW:
        raise CorruptArchiveError("the ANS message's head is below its lower bound: the data is damaged")
    return words


class AnsStack:
    """The rANS message (one lane of an ``AnsLanes``). ``info_bits`` tracks how much information it holds (used
    for cost accounting)."""

    __slots__ = ("_lanes", "_lane")

    def __init__(self, capacity: int = 1024):
        self._lanes, self._lane = AnsLanes(1, capacity), 0

    @property
    def _state(self) -> np.ndarray:
        return self._lanes.states[self._lane]

    @property
    def _buf(self) -> np.ndarray:
        return self._lanes.bufs[self._lane]

    # -- low level, used by codecs -----------------------------------------------------------------------
    def reserve(self, words: int) -> None:
        self._lanes.reserve(words, [self._lane])

    def run_push(self, kernel, n: int, *args) -> None:
        self.reserve(n)  # each pushed symbol emits at most one word
        failed = kernel(self._state, self._buf, *args)
        if failed >= 0:
            raise_unpushable(failed, n)

    def run_pop(self, kernel, out: np.ndarray, *args) -> np.ndarray:
        failed = kernel(self._state, self._buf, out, *args)
        if failed >= 0:
            raise_unpoppable(failed, len(out))
        return out

    # -- inspection and serialisation --------------------------------------------------------------------
    @property
    def head(self) -> int:
        return int(self._state[0])

    @property
    def word_count(self) -> int:
        return int(self._state[1])

    @property
    def is_empty(self) -> bool:
        """True for a fresh stack: nothing was pushed, or everything pushed was popped again."""
        return self.head == _LOW and self.word_count == 0

    @property
    def info_bits(self) -> float:
        return math.log2(self.head) - 32 + 32 * self.word_count

    def to_bytes(self) -> bytes:
        head = np.array([self.head & 0xFFFFFFFF, self.head >> 32], dtype="<u4")
        return head.tobytes() + self._buf[: self.word_count][::-1].astype("<u4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "AnsStack":
        return AnsLanes.from_messages([data]).stack(0)


def raise_unpushable(symbol: int, n: int):
    raise CodingError(
        f"symbol {symbol} of {n} has probability 0 under its codec and cannot be coded (a model that "
        "returns a floor-less codec for data it has not seen, or damaged data)"
    )


def raise_unpoppable(symbol: int, n: int):
    raise CodingError(
        f"the ANS stack ran out of bits while popping symbol {symbol} of {n}: the chain needs more "
        "initial bits (a longer seed) or the data was not produced by the matching push"
    )
