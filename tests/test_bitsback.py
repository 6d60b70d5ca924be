"""Codecs built from codecs, through the ``Codec`` protocol: serial, repeat, Mapped, and bits-back coding of a
model the Bit-Swap chain cannot express, inside the real chunk chain."""
import numpy as np
import pytest

from bbarc.ans import AnsLanes
from bbarc.bitsback import BitsBack
from bbarc.chain import decode_chunks, encode_chunks
from bbarc.codecs import Categorical, Mapped, Uniform, repeat, serial
from bbarc.errors import CodingError
from bbarc.payload import header_item_count
from tests.ans_helpers import Stack

PREC = 12


def cdf_rows(freqs: np.ndarray) -> np.ndarray:
    """Integer CDF rows (..., S + 1) summing to 2**PREC, every symbol at least 1, from positive weights."""
    scaled = np.maximum(1, np.floor(freqs / freqs.sum(-1, keepdims=True) * ((1 << PREC) - freqs.shape[-1])))
    scaled = scaled.astype(np.int64)
    scaled[..., -1] += (1 << PREC) - scaled.sum(-1)
    return np.concatenate([np.zeros((*freqs.shape[:-1], 1), np.int64), np.cumsum(scaled, -1)], -1)


class TwoLatentsOnX:
    """q(z1|x) and q(z2|x) both read the item, p(x|z1, z2) reads both latents, uniform priors: not a Markov chain
    x - z1 - z2, so Bit-Swap cannot code it; ``BitsBack`` over the pair (z1, z2) can. Items: 16 values in [0, 8).
    The tables are small and fixed (made from a seeded generator once)."""

    item_shape, item_dtype = (16,), np.dtype(np.uint8)

    def __init__(self, z2_size: int = 4):
        rng = np.random.default_rng(14)
        self.z2_size = z2_size
        self.q1 = cdf_rows(rng.integers(1, 50, (8, 8)) + 400 * np.eye(8, dtype=np.int64))  # z1[j] near x[j]
        self.q2 = cdf_rows(rng.integers(20, 30, (8, 8, 16)))  # z2[j] from (x[j], x[j + 1]), nearly flat
        self.px = cdf_rows(rng.integers(1, 30, (8, 16, 8)) + 300 * np.eye(8, dtype=np.int64)[:, None, :])

    def posterior(self, x: np.ndarray):
        x = x.astype(np.int64)
        j = np.arange(self.z2_size) % 16
        q2 = self.q2[x[:, j], x[:, (j + 1) % 16]]
        return serial(Categorical(self.q1[x[:, :8]].reshape(-1, 9), PREC), Categorical(q2.reshape(-1, 17), PREC))

    def likelihood(self, z):
        z1, z2 = z
        i = np.arange(16)
        rows = self.px[z1[:, i % 8], z2[:, i % self.z2_size]]
        return Mapped(Categorical(rows.reshape(-1, 9), PREC), lambda x: x.astype(np.int64),
                      lambda s: s.astype(np.uint8))

    def item_codec(self):
        prior = serial(Uniform(8, 3), Uniform(self.z2_size, 4))
        return BitsBack(prior, self.likelihood, self.posterior)


def toy_items(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 8, (1, 16))
    return ((base + (rng.random((n, 16)) < 0.2) * rng.integers(0, 8, (n, 16))) % 8).astype(np.uint8)


def test_a_non_markov_latent_model_codes_through_the_chain():
    model = TwoLatentsOnX()
    chunks = [(toy_items(30, 1), 0, {}), (toy_items(7, 2), 1, {"labels": np.arange(7)}), (toy_items(1, 3), 2, {})]
    payloads = encode_chunks(model, chunks)
    assert payloads == [encode_chunks(model, [c])[0] for c in chunks]  # lockstep = alone
    decoded = decode_chunks(model, [(p, len(c[0]), c[1]) for p, c in zip(payloads, chunks)], (16,), np.dtype("u1"))
    for (items, side), (want, _, want_side) in zip(decoded, chunks):
        assert np.array_equal(items, want) and side.keys() == want_side.keys()
    assert decoded[1][1]["labels"].tolist() == list(range(7))
    assert header_item_count(payloads[0]) == 0  # the seed alone paid for the first pops
    assert len(payloads[0]) < len(chunks[0][0].tobytes())  # and bits-back compressed


def test_a_short_seed_restarts_only_its_own_chain():
    """Posterior pops worth more bits than a bare seed holds: that chain restarts with items in its header, while
    a chain in the same lockstep call whose seed is larger (side data) codes from its first item."""
    model = TwoLatentsOnX(z2_size=400)
    noise = np.random.default_rng(5).integers(0, 256, 2000).astype(np.uint8)
    chunks = [(toy_items(12, 7), 0, {}), (toy_items(12, 8), 1, {"noise": noise})]
    payloads = encode_chunks(model, chunks, header_version=1)  # (version 2 needs no seed: see below)
    assert header_item_count(payloads[0]) >= 1 and header_item_count(payloads[1]) == 0
    assert payloads == [encode_chunks(model, [c], header_version=1)[0] for c in chunks]
    decoded = decode_chunks(model, [(p, 12, c[1]) for p, c in zip(payloads, chunks)], (16,), np.dtype("u1"))
    assert all(np.array_equal(items, c[0]) for (items, _), c in zip(decoded, chunks))


# --- the combinators' protocol ------------------------------------------------------------------------------


def _seeded_lanes(bits_per_lane: list[int]) -> AnsLanes:
    """Lanes holding that many random bits each (in 16-bit symbols)."""
    lanes = AnsLanes(len(bits_per_lane))
    rng = np.random.default_rng(1)
    for lane, bits in enumerate(bits_per_lane):
        Stack(lanes, lane).push(Uniform(bits // 16, 16), rng.integers(0, 1 << 16, bits // 16))
    return lanes


def test_serial_pushes_in_order_and_pops_in_reverse():
    a, b = Uniform(3, 5), Categorical(cdf_rows(np.arange(1, 9)[None].repeat(4, 0)), PREC)
    sa, sb = np.array([[1, 2, 3], [4, 5, 6]]), np.array([[0, 7], [3, 3]])
    lanes, ids = AnsLanes(2), np.array([1, 0])
    assert (serial(a, b).push_lanes(lanes, ids, (sa, sb)) == -1).all()
    for p, lane in enumerate(ids):
        alone = Stack()
        alone.push(a, sa[p])
        alone.push(b.take(slice(2 * p, 2 * p + 2)), sb[p])
        assert lanes.message(lane) == alone.to_bytes()
    (ra, rb), status = serial(a, b).pop_lanes(lanes, ids)
    assert (status == -1).all() and np.array_equal(ra, sa) and np.array_equal(rb, sb)
    assert lanes.is_empty(0) and lanes.is_empty(1)
    with pytest.raises(CodingError, match="2 parts"):
        serial(a, b).push_lanes(lanes, ids, (sa,))


def test_repeat_is_serial_of_copies_with_stacked_symbols():
    codec = Uniform(2, 7)
    symbols = np.random.default_rng(2).integers(0, 128, (3, 4, 2))
    lanes, by_serial, ids = AnsLanes(3), AnsLanes(3), np.arange(3)
    assert (repeat(codec, 4).push_lanes(lanes, ids, symbols) == -1).all()
    serial(*[codec] * 4).push_lanes(by_serial, ids, tuple(symbols[:, i] for i in range(4)))
    assert [lanes.message(j) for j in ids] == [by_serial.message(j) for j in ids]
    out, status = repeat(codec, 4).pop_lanes(lanes, ids)
    assert (status == -1).all() and np.array_equal(out, symbols)


def test_a_lane_that_runs_short_fails_alone_and_reports_where():
    """Lane 1 holds too few bits: it fails with the status of its first failing part, and the other lanes are
    coded exactly as if alone."""
    codec = serial(Uniform(1, 16), Uniform(4, 16))  # popped: 64 bits, then 16
    lanes = _seeded_lanes([160, 32, 160])
    before = [lanes.message(j) for j in range(3)]
    out, status = codec.pop_lanes(lanes, np.arange(3))
    assert status.tolist() == [-1, 2, -1]  # lane 1's 32 bits pay for 2 of the 4 symbols popped first
    alone = Stack.from_bytes(before[2])
    assert np.array_equal(alone.pop(Uniform(4, 16)), out[1][2]) and np.array_equal(alone.pop(Uniform(1, 16)), out[0][2])
    codec.push_lanes(lanes, np.array([0, 2]), (out[0][[0, 2]], out[1][[0, 2]]))
    assert [lanes.message(j) for j in (0, 2)] == [before[0], before[2]]
    _, status = repeat(Uniform(8, 16), 3).pop_lanes(_seeded_lanes([64, 32]), np.arange(2))
    assert status.tolist() == [4, 2]


def test_a_bits_back_lane_that_runs_short_leaves_the_later_network_calls():
    model = TwoLatentsOnX()
    calls = []
    codec = BitsBack(model.item_codec().prior, lambda z: calls.append(len(z[0])) or model.likelihood(z),
                     model.posterior)
    x = toy_items(3, 4)
    lanes = _seeded_lanes([4000, 16, 4000])
    before = [lanes.message(j) for j in range(3)]
    status = codec.push_lanes(lanes, np.arange(3), x)
    assert status[1] >= 0 and (status[[0, 2]] == -1).all() and calls == [2]
    out, status = codec.pop_lanes(lanes, np.array([0, 2]))
    assert (status == -1).all() and np.array_equal(out, x[[0, 2]])
    assert [lanes.message(j) for j in (0, 2)] == [before[0], before[2]]
    out, status = codec.pop_lanes(AnsLanes(2), np.arange(2))
    assert out is None and (status >= 0).all()  # every lane failed: no symbols at all


def test_bits_back_pops_then_pushes_and_gives_the_bits_back():
    """Pushing x costs -log p(x|z) - log p(z) + log q(z|x) bits, not the full -log p(x|z) - log p(z); popping
    returns the message to where it was, bits-back included."""
    model = TwoLatentsOnX()
    codec = model.item_codec()
    x = toy_items(3, 4)
    lanes = _seeded_lanes([4000, 4000, 4000])
    before = [lanes.message(j) for j in range(3)]
    assert (codec.push_lanes(lanes, np.arange(3), x) == -1).all()
    out, status = codec.pop_lanes(lanes, np.arange(3))
    assert (status == -1).all() and out.dtype == np.uint8 and np.array_equal(out, x)
    assert [lanes.message(j) for j in range(3)] == before
