"""Randomized damage (issue 15): bytes flipped, cut, inserted or removed anywhere in archives of formats 1 and 2,
bits-back and model-free. Whatever the damage, reading ends in a clean error or the original data, in bounded
memory. Property-based (hypothesis), derandomized so that CI runs the same cases every time."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bbarc
from tests.crafting import CLEAN_EXITS, TRACEBACK, check_api, cli_measured
from tests.helpers import ROOT

ARCHIVES = ["mnist-vae-v2", "zstd-float32be-v2", "mnist-vae-v1", "zstd-float32be-v1"]
DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.integers(1, 16)),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True), st.integers(1, 16)),
)


@pytest.fixture(scope="module")
def intact():
    out = {}
    for name in ARCHIVES:
        path = ROOT / "tests" / "golden" / f"{name}.bbarc"
        with bbarc.open(path) as a:
            out[name] = path.read_bytes(), a[:]
    return out


def damage(data: bytes, steps) -> bytes:
    data = bytearray(data)
    for kind, where, amount in steps:
        at = int(where * len(data))
        if kind == "flip":
            data[at] ^= amount
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = bytes((at * 31 + i * 7) & 0xFF for i in range(amount))
        else:
            del data[at : at + amount]
        if not data:
            break
    return bytes(data)


@settings(max_examples=50, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(ARCHIVES), steps=st.lists(DAMAGE, min_size=1, max_size=3))
def test_random_damage_through_the_api(name, steps, intact, tmp_path):
    data, original = intact[name]
    path = tmp_path / "damaged.bbarc"
    path.write_bytes(damage(data, steps))
    check_api(path, original, tmp_path)


def test_random_damage_through_the_cli(intact, tmp_path):
    """A few damaged files through the commands a user runs: clean exits, no traceback, bounded memory."""
    rng = np.random.default_rng(15)
    data, original = intact["zstd-float32be-v2"]
    base = tmp_path / "intact.bbarc"
    base.write_bytes(data)
    baseline = cli_measured("verify", "--deep", base)
    for n in range(3):
        steps = [("flip", rng.random(), int(rng.integers(1, 256))), ("cut", 0.5 + rng.random() / 2, 0)][: n % 2 + 1]
        path = tmp_path / f"d{n}.bbarc"
        path.write_bytes(damage(data, steps))
        for args in (["verify", "--deep", path], ["get", path, "5", "-o", tmp_path / f"d{n}.npy"]):
            run = cli_measured(*args)
            assert run.returncode in CLEAN_EXITS and TRACEBACK not in run.stderr, (args, run.stderr[-2000:])
            assert run.max_rss_mb <= baseline.max_rss_mb + 100, (args, run.max_rss_mb)
            if args[0] == "get" and run.returncode == 0:
                assert np.array_equal(np.load(tmp_path / f"d{n}.npy"), original[5])
