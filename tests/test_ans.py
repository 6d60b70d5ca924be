import numpy as np
import pytest

from bbarc import fixedpoint as fp
from bbarc.ans import AnsLanes
from bbarc.codecs import Bytes, Categorical, Grid, LogisticMixture, Uniform
from bbarc.errors import CodingError, CorruptArchiveError
from tests.ans_helpers import Stack, seeded


def random_mixture(rng, n, k=3, grid=Grid.levels(256), prec=16):
    mean = rng.integers(-40 << 16, 300 << 16, (n, k))
    log_scale = rng.integers(fp.LOG_SCALE_MIN - 10, 150, (n, k))
    weights = fp.mixture_weights(rng.integers(-100, 100, (n, k)))
    return LogisticMixture(grid, mean, log_scale, weights, prec)


def test_uniform_round_trip_and_serialisation():
    rng = np.random.default_rng(1)
    stack = Stack()
    data = [rng.integers(0, 1 << b, 100) for b in (1, 5, 12, 31)]
    for b, d in zip((1, 5, 12, 31), data):
        stack.push(Uniform(100, b), d)
    restored = Stack.from_bytes(stack.to_bytes())
    for b, d in reversed(list(zip((1, 5, 12, 31), data))):
        assert np.array_equal(restored.pop(Uniform(100, b)), d)
    assert restored.is_empty


def test_mixture_round_trip_is_exact_and_costs_what_the_frequencies_say():
    rng = np.random.default_rng(2)
    codec = random_mixture(rng, 3000)
    cdf = codec.cdf_table()
    assert (np.diff(cdf, axis=1) >= 1).all() and (cdf[:, -1] == 1 << 16).all()
    symbols = np.array([rng.choice(256, p=np.diff(row) / 65536) for row in cdf])
    stack = Stack()
    stack.push(codec, symbols)
    ideal = -np.log2(np.diff(cdf, axis=1)[np.arange(len(symbols)), symbols] / 65536).sum()
    assert abs(stack.info_bits - ideal) < 1.0
    assert len(stack.to_bytes()) * 8 < ideal + 64 + 32
    assert np.array_equal(Stack.from_bytes(stack.to_bytes()).pop(codec), symbols)


def test_pop_then_push_restores_the_stack_bits_back():
    rng = np.random.default_rng(3)
    stack = seeded(512)
    before = stack.to_bytes()
    q = LogisticMixture(Grid.latent(12), rng.integers(-3 << 16, 3 << 16, 50), -100, 1, 20)
    z = stack.pop(q)
    stack.push(q, z)
    assert stack.to_bytes() == before


def test_categorical_tables():
    rng = np.random.default_rng(4)
    freqs = rng.integers(1, 50, (200, 10))
    cdf = np.zeros((200, 11), np.int64)
    cdf[:, 1:] = np.cumsum(freqs, axis=1)
    cdf[:, -1] = 1 << 12  # make the last symbol take the rest
    codec = Categorical(cdf, 12)
    symbols = rng.integers(0, 10, 200)
    stack = seeded()
    stack.push(codec, symbols)
    assert np.array_equal(stack.pop(codec), symbols)
    with pytest.raises(CodingError, match="rise strictly"):
        Categorical(np.zeros((2, 3), np.int64), 12)


def test_popping_an_empty_stack_raises_instead_of_inventing_bits():
    with pytest.raises(CodingError, match="ran out of bits"):
        Stack().pop(Uniform(1, 8))
    stack = seeded(4)  # 32 bits is not enough for 20 latents
    q = LogisticMixture(Grid.latent(12), np.zeros(20, np.int64), 0, 1, 20)
    with pytest.raises(CodingError):
        stack.pop(q)


def test_invalid_symbols_and_parameters_are_rejected():
    stack = Stack()
    with pytest.raises(CodingError, match=r"\[0, 256\)"):
        stack.push(random_mixture(np.random.default_rng(0), 2), [0, 256])
    with pytest.raises(CodingError, match="weights"):
        LogisticMixture(Grid.levels(256), [[0]], [[0]], [[0]], 16)
    with pytest.raises(CodingError, match="precision"):
        LogisticMixture(Grid.levels(256), [[0]], [[0]], [[1]], 30)
    with pytest.raises(CorruptArchiveError):
        Stack.from_bytes(b"\x00" * 8)


def test_bernoulli_as_logistic_matches_sigmoid():
    logits = np.array([-5.0, -1.0, 0.0, 2.0, 7.0])
    codec = LogisticMixture(Grid.binary(), np.round(logits * 65536).astype(np.int64), 0, 1, 16)
    p0 = codec.cdf_table()[:, 1] / 65536
    assert np.allclose(p0, 1 / (1 + np.exp(logits)), atol=2e-4)


def test_floorless_posterior_round_trips_and_refuses_impossible_symbols():
    rng = np.random.default_rng(5)
    q = LogisticMixture(Grid.latent(12), rng.integers(-2 << 16, 2 << 16, 40), -150, 1, 20, floor=False)
    cdf = q.cdf_table()
    assert (np.diff(cdf, axis=1) == 0).any() and (cdf[:, -1] == 1 << 20).all()
    stack = seeded(1024)
    before = stack.to_bytes()
    z = stack.pop(q)
    assert (np.diff(cdf, axis=1)[np.arange(40), z] > 0).all()
    stack.push(q, z)
    assert stack.to_bytes() == before
    impossible = np.where(np.diff(cdf[:1], axis=1)[0] == 0)[0][:1].repeat(40)
    with pytest.raises(CodingError, match="probability 0"):
        stack.push(q, impossible)


@pytest.mark.parametrize("floor", [True, False])
@pytest.mark.parametrize("grid,k,prec", [(Grid.levels(256), 3, 20), (Grid.latent(12), 1, 26), (Grid.binary(), 1, 16),
                                        (Grid.levels(5), 2, 12)])
def test_pop_finds_the_symbol_the_cdf_table_says(grid, k, prec, floor):
    """Pops search from a floating-point guess; whatever the guess, the symbol must be the one whose integer
    CDF interval holds the state's slot, for means and scales from sharp to flat, inside and outside the grid."""
    rng = np.random.default_rng(7)
    n = 3000
    span = int(grid.edges[-1] - grid.edges[0]) + (1 << 16)
    mean = rng.integers(int(grid.edges[0]) - span, int(grid.edges[-1]) + span, (n, k))
    log_scale = rng.integers(fp.LOG_SCALE_MIN - 10, fp.LOG_SCALE_MAX + 10, (n, k))
    weights = rng.integers(0, 1 << fp.WEIGHT_BITS, (n, k))
    weights[:, 0] += 1
    codec = LogisticMixture(grid, mean, log_scale, np.minimum(weights, 1 << fp.WEIGHT_BITS), prec, floor=floor)
    cdf = codec.cdf_table()
    stack = Stack()
    stack.push(Uniform(4000, 31), rng.integers(0, 1 << 31, 4000))
    for i in range(n):
        slot = stack.head & ((1 << prec) - 1)
        want = int(np.searchsorted(cdf[i], slot, side="right")) - 1
        assert stack.pop(codec.take(slice(i, i + 1)))[0] == want


def test_lanes_code_each_message_as_if_alone():
    rng = np.random.default_rng(3)
    codec = random_mixture(rng, 4 * 30)
    symbols = rng.integers(0, 256, (4, 30))
    lanes = AnsLanes(5, capacity=16)
    ids = np.array([4, 0, 2, 1])
    assert (codec.push_lanes(lanes, ids, symbols) == -1).all()
    for p, lane in enumerate(ids):
        alone = Stack()
        alone.push(codec.take(slice(p * 30, (p + 1) * 30)), symbols[p])
        assert lanes.message(lane) == alone.to_bytes()
    assert lanes.is_empty(3)
    out, status = codec.pop_lanes(lanes, ids)
    assert (status == -1).all() and np.array_equal(out, symbols)
    assert all(lanes.is_empty(j) for j in range(5))
    _, status = codec.pop_lanes(lanes, ids)  # nothing left: every lane reports where it ran dry
    assert (status == 0).all()


def _spec_cdf(edges, mean, log_scale, weights, prec, floor, k):
    """F(k) exactly as formats/SPEC.md writes it, in Python integers (independent of the numba kernels)."""
    n_sym = len(edges) + 1
    if k <= 0:
        return 0
    if k >= n_sym:
        return 1 << prec
    sig, inv_table = fp.sigmoid_table(), fp.inverse_scale_table()
    c = 0
    for mu, ls, w in zip(mean, log_scale, weights):
        inv = int(inv_table[min(max(ls, fp.LOG_SCALE_MIN), fp.LOG_SCALE_MAX) - fp.LOG_SCALE_MIN])
        d = int(edges[k - 1]) - int(mu)
        t = (d * inv) >> 24 if abs(d * inv) < 1 << 62 else (1 << 40 if d > 0 else -(1 << 40))
        p = t + (32 << 16)
        if p <= 0:
            s = int(sig[0])
        elif p >= 64 << 16:
            s = int(sig[-1])
        else:
            j, f = p >> 10, p & 1023
            s = int(sig[j]) + (((int(sig[j + 1]) - int(sig[j])) * f) >> 10)
        c += int(w) * s
    total = int(sum(int(w) for w in weights)) << 24
    return c * ((1 << prec) - n_sym) // total + k if floor else (c << prec) // total


@pytest.mark.parametrize("k,grid,prec,floor", [(1, Grid.binary(), 20, True), (1, Grid.latent(12), 26, False),
                                               (2, Grid.levels(256), 20, True), (3, Grid.levels(256), 16, True)])
def test_kernel_cdf_is_the_specified_formula(k, grid, prec, floor):
    rng = np.random.default_rng(11)
    n = 40
    mean = rng.integers(-300 << 16, 300 << 16, (n, k))
    log_scale = rng.integers(fp.LOG_SCALE_MIN - 5, fp.LOG_SCALE_MAX + 5, (n, k))
    weights = fp.mixture_weights(rng.integers(-60, 60, (n, k)))
    table = LogisticMixture(grid, mean, log_scale, weights, prec, floor=floor).cdf_table()
    for i in range(n):
        for sym in rng.integers(0, grid.symbols + 1, 12):
            assert table[i, sym] == _spec_cdf(grid.edges, mean[i], log_scale[i], weights[i], prec, floor, int(sym))


def test_a_symbol_with_all_the_probability_mass_codes_and_decodes():
    """A floor-less posterior can be so sure that one bin gets frequency 2**prec: pushing it must not
    renormalise (freq * 2**(64 - prec) would overflow 64 bits), or the chain cannot be decoded."""
    q = LogisticMixture(Grid.latent(12), [7 << 16, -(7 << 16)], fp.LOG_SCALE_MIN, 1, 20, floor=False)
    assert (np.diff(q.cdf_table(), axis=1) == 1 << 20).any(axis=1).all()
    stack = seeded()
    before = stack.to_bytes()
    z = stack.pop(q)  # costs nothing: each symbol is certain
    assert stack.to_bytes() == before
    stack.push(q, z)
    assert stack.to_bytes() == before
    x = random_mixture(np.random.default_rng(5), 20)
    symbols = np.arange(20) * 7
    stack.push(x, symbols)
    stack.push(q, z)  # bits-back order: the certain push sits between other pushes and pops
    assert np.array_equal(stack.pop(q), z) and np.array_equal(stack.pop(x), symbols)
    assert stack.to_bytes() == before


def test_byte_strings_of_different_lengths_share_one_call():
    lanes, ids = AnsLanes(3), np.array([2, 0, 1])
    strings = [b"", b"seed header", bytes(range(256)) * 3]
    assert (Bytes().push_lanes(lanes, ids, strings) == -1).all()
    alone = Stack()
    alone.push(Bytes(), strings[1])
    assert lanes.message(0) == alone.to_bytes()
    out, status = Bytes().pop_lanes(lanes, ids)
    assert out == strings and (status == -1).all() and all(lanes.is_empty(j) for j in range(3))
    stack = Stack()
    stack.push(Uniform(2, 16), [0, 200])  # a length of 200 bytes on a message holding 32 bits
    out, status = Bytes().pop_lanes(stack.lanes, stack.ids)
    assert out == [None] and status[0] >= 0


@pytest.mark.parametrize("floor", [True, False])
def test_bernoulli_kernels_code_as_the_mixture_kernels(floor):
    """Two symbols and one component take kernels with one sigmoid per symbol: they must push exactly the message
    the general mixture kernels push, and pop the same symbols, for logits and scales from sharp to flat."""
    from bbarc import kernels

    rng = np.random.default_rng(3)
    n_lanes, n = 5, 600
    mean = rng.integers(-(40 << 16), 40 << 16, (n_lanes * n, 1))
    mean[::9] = rng.integers(-(1 << 30), 1 << 30, (len(mean[::9]), 1))
    log_scale = rng.integers(fp.LOG_SCALE_MIN - 10, fp.LOG_SCALE_MAX + 10, (n_lanes * n, 1))
    codec = LogisticMixture(Grid.binary(), mean, log_scale, 1, 16, floor=floor)
    widths = np.diff(codec.cdf_table(), axis=1)
    symbols = (rng.random(len(mean)) < 0.5).astype(np.int64)
    symbols[widths[np.arange(len(mean)), symbols] == 0] ^= 1  # codable symbols only
    symbols = symbols.reshape(n_lanes, n)
    ids = np.arange(n_lanes, dtype=np.int64)
    general = (kernels.push_mixture_lanes, kernels.pop_mixture_lanes, codec._args())
    binary = (kernels.push_binary_lanes, kernels.pop_binary_lanes, codec._binary_args())
    messages, popped, seeds = [], [], rng.integers(0, 1 << 16, (n_lanes, 64))
    for push, pop, args in (general, binary):
        lanes = AnsLanes(n_lanes, 4096)
        for j in range(n_lanes):
            Stack(lanes, j).push(Uniform(64, 16), seeds[j])
        seeded_states = lanes.states.copy()
        assert (lanes.run_push(push, ids, n, symbols, *args) == -1).all()
        messages.append([lanes.message(j) for j in range(n_lanes)])
        out = np.empty((n_lanes, n), np.int64)
        assert (lanes.run_pop(pop, ids, out, *args) == -1).all()
        assert np.array_equal(lanes.states, seeded_states)
        popped.append(out)
    assert messages[0] == messages[1] and np.array_equal(popped[0], symbols) and np.array_equal(popped[1], symbols)
