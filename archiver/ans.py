"""A stack (LIFO) rANS coder: 64-bit head, 32-bit words, exact integer arithmetic.

``AnsStack`` is the mutable message; codecs (``archiver.codecs``) are immutable values that push symbols onto it
and pop them off. Popping more information than was ever pushed raises ``CodingError`` instead of inventing
bits: bits-back coding must start from real "clean bits" (the chunk header, see ``archiver.chain``).
"""
from __future__ import annotations

import math

import numpy as np

from formats.errors import CodingError, CorruptArchiveError

from . import kernels

_LOW = 1 << 32


class AnsStack:
    """The rANS message. ``info_bits`` tracks how much information it holds (used for cost accounting)."""

    __slots__ = ("_state", "_buf")

    def __init__(self, capacity: int = 1024):
        self._state = np.array([_LOW, 0], dtype=np.uint64)
        self._buf = np.empty(max(capacity, 16), dtype=np.uint32)

    # -- low level, used by codecs -----------------------------------------------------------------------
    def reserve(self, words: int) -> None:
        need = int(self._state[1]) + words
        if need > len(self._buf):
            grown = np.empty(max(need, 2 * len(self._buf)), dtype=np.uint32)
            grown[: int(self._state[1])] = self._buf[: int(self._state[1])]
            self._buf = grown

    def run_push(self, kernel, n: int, *args) -> None:
        self.reserve(n)  # each pushed symbol emits at most one word
        failed = kernel(self._state, self._buf, *args)
        if failed >= 0:
            raise CodingError(
                f"symbol {failed} of {n} has probability 0 under its codec and cannot be coded (a model that "
                "returns a floor-less codec for data it has not seen, or damaged data)"
            )

    def run_pop(self, kernel, out: np.ndarray, *args) -> np.ndarray:
        failed = kernel(self._state, self._buf, out, *args)
        if failed >= 0:
            raise CodingError(
                f"the ANS stack ran out of bits while popping symbol {failed} of {len(out)}: the chain needs more "
                "initial bits (a longer seed) or the data was not produced by the matching push"
            )
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
        if len(data) < 8 or len(data) % 4:
            raise CorruptArchiveError(f"an ANS message must be 8 + 4k bytes long, got {len(data)} bytes")
        words = np.frombuffer(data, dtype="<u4")
        head = int(words[0]) | (int(words[1]) << 32)
        if head < _LOW:
            raise CorruptArchiveError("the ANS message's head is below its lower bound: the data is damaged")
        stack = cls(len(words))
        stack._state[0] = head
        stack._state[1] = len(words) - 2
        stack._buf[: len(words) - 2] = words[2:][::-1]
        return stack
