"""One ANS message for tests: lane 0 of an ``AnsLanes``, with push/pop that raise where a lane would fail."""
from __future__ import annotations

import numpy as np

from bbarc.ans import AnsLanes
from bbarc.codecs import Bytes
from bbarc.errors import CodingError

LANE = np.zeros(1, dtype=np.int64)


class Stack:
    def __init__(self, lanes: AnsLanes | None = None, lane: int = 0):
        self.lanes, self.ids = lanes or AnsLanes(1), np.array([lane], dtype=np.int64)

    def push(self, codec, symbols) -> None:
        one = [symbols] if isinstance(codec, Bytes) else np.asarray(symbols)[None]
        status = codec.push_lanes(self.lanes, self.ids, one)
        if status[0] >= 0:
            raise CodingError(f"the push ran out of bits at symbol {status[0]}")

    def pop(self, codec):
        out, status = codec.pop_lanes(self.lanes, self.ids)
        if status[0] >= 0:
            raise CodingError(f"ran out of bits at symbol {status[0]}")
        return out[0]

    @property
    def head(self) -> int:
        return self.lanes.head(int(self.ids[0]))

    @property
    def info_bits(self) -> float:
        return self.lanes.info_bits(int(self.ids[0]))

    @property
    def is_empty(self) -> bool:
        return self.lanes.is_empty(int(self.ids[0]))

    def to_bytes(self) -> bytes:
        return self.lanes.message(int(self.ids[0]))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Stack":
        return cls(AnsLanes.from_messages([data]))


def seeded(n_bytes: int = 256, seed: int = 0) -> Stack:
    """A message holding ``n_bytes`` random bytes (enough clean bits for a few pops)."""
    stack = Stack()
    stack.push(Bytes(), np.random.default_rng(seed).bytes(n_bytes))
    return stack
