"""A stack (LIFO) rANS coder: 64-bit head, 32-bit words, exact integer arithmetic.

``AnsLanes`` holds several independent messages (lanes); codecs (``bbarc.codecs``) are immutable values that push
symbols onto lanes and pop them off. Popping more information than was ever pushed fails (the lane's status says
where) instead of inventing bits: bits-back coding must start from real "clean bits" (the chunk's seed header,
see ``bbarc.chain``).

A message is serialised as its head (two little-endian 32-bit words, low first) followed by its words from the top
of the stack down; a fresh message (nothing pushed) is the head ``HEAD_LOW`` and no words.
"""
from __future__ import annotations

import math

import numpy as np

from bbarc.errors import CodingError, CorruptArchiveError

from .kernels_py import HEAD_LOW  # not from bbarc.kernels: that loads numba


class AnsLanes:
    """Several independent rANS messages held in one pair of arrays: row j of ``states`` (head, word count) and of
    ``bufs`` is message j. Chunks coded in lockstep each keep their own message (so each decodes alone), while
    one kernel call codes a row of symbols for every one of them (``run_push``/``run_pop`` with lane ids)."""

    __slots__ = ("states", "bufs")

    def __init__(self, count: int, capacity: int = 1024):
        self.states = np.zeros((count, 2), dtype=np.uint64)
        self.states[:, 0] = HEAD_LOW
        self.bufs = np.empty((count, max(capacity, 16)), dtype=np.uint32)

    def __len__(self) -> int:
        return len(self.states)

    def reset(self, lane: int) -> None:
        self.states[lane] = (HEAD_LOW, 0)

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

    # -- one lane: inspection and serialisation ------------------------------------------------------------
    def head(self, lane: int) -> int:
        return int(self.states[lane, 0])

    def word_count(self, lane: int) -> int:
        return int(self.states[lane, 1])

    def is_empty(self, lane: int) -> bool:
        """True for a fresh message: nothing was pushed, or everything pushed was popped again."""
        return self.head(lane) == HEAD_LOW and self.word_count(lane) == 0

    def info_bits(self, lane: int) -> float:
        """How much information message ``lane`` holds (a fresh message holds none)."""
        return math.log2(self.head(lane)) - 32 + 32 * self.word_count(lane)

    def message(self, lane: int) -> bytes:
        """Message ``lane`` serialised (see the module docstring); ``from_messages`` reads it back."""
        head = self.head(lane)
        words = np.array([head & 0xFFFFFFFF, head >> 32], dtype="<u4")
        return words.tobytes() + self.bufs[lane, : self.word_count(lane)][::-1].astype("<u4").tobytes()

    @classmethod
    def from_messages(cls, messages: list[bytes]) -> "AnsLanes":
        """Lanes holding the serialised ``messages``, in order; CorruptArchiveError if one is not a message."""
        words = [message_words(m) for m in messages]
        lanes = cls(len(messages), max((len(w) for w in words), default=0))
        for j, w in enumerate(words):
            lanes.states[j] = (int(w[0]) | (int(w[1]) << 32), len(w) - 2)
            lanes.bufs[j, : len(w) - 2] = w[2:][::-1]
        return lanes


def message_words(data: bytes) -> np.ndarray:
    """The 32-bit words of a serialised message, checked; CorruptArchiveError if it is not one."""
    if len(data) < 8 or len(data) % 4:
        raise CorruptArchiveError(f"an ANS message must be 8 + 4k bytes long, got {len(data)} bytes")
    words = np.frombuffer(data, dtype="<u4")
    if (int(words[0]) | (int(words[1]) << 32)) < HEAD_LOW:
        raise CorruptArchiveError("the ANS message's head is below its lower bound: the data is damaged")
    return words


def raise_unpushable(symbol: int, n: int):
    raise CodingError(
        f"symbol {symbol} of {n} has probability 0 under its codec and cannot be coded (a model that "
        "returns a floor-less codec for data it has not seen, or damaged data)"
    )
