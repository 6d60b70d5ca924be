"""Archives decode (and encode) to the same items and bytes with the light kernels and the light int8 products as
with the compiled kernels and torch; decoding one item in a fresh process loads neither numba nor torch."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bbarc
from bbarc import kernel_choice as choice
from tests.golden.make_golden import golden_inputs

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = golden_inputs()


@pytest.fixture
def light(monkeypatch):
    """Light kernels and the light int8 products only; yields a function returning the light seconds spent since
    (so a test can check that the light path really coded)."""
    import bbarc.plugins.intnet as intnet

    monkeypatch.setenv(choice.KERNELS_ENV, "light")
    monkeypatch.setattr(intnet, "TORCH_MIN_BATCH", 1 << 30)
    start = choice._light_spent[0]
    yield lambda: choice._light_spent[0] - start


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.bbarc")), ids=lambda p: p.name)
def test_golden_archives_decode_light(path, light):
    name = path.name.rsplit("-v", 1)[0]
    _, items, _, _ = CASES[name]
    with bbarc.open(path, cache_chunks=0) as a:
        for i in (len(a) - 1, 0, len(a) // 2):  # random access: part of a chunk
            assert np.array_equal(a[i], items[i])
        assert np.array_equal(a[:], items)
    assert light() > 0 or name.startswith("zstd")


@pytest.mark.parametrize("model, n, chunk", [("mnist-vae", 40, 16), ("mnist-vae-binary", 40, 16),
                                             ("mnist-hvae", 6, 3)])
def test_fresh_archives_are_the_same_bytes(model, n, chunk, mnist, mnist_binary, tmp_path, monkeypatch):
    """Written by the compiled kernels (and torch where installed) or by the light ones: the same bytes; and
    either decodes it, whole or one item at a time."""
    import bbarc.plugins.intnet as intnet

    items = (mnist_binary if model == "mnist-vae-binary" else mnist)[:n]
    monkeypatch.setenv(choice.KERNELS_ENV, "compiled")
    monkeypatch.setattr(intnet, "TORCH_MIN_BATCH", 1)
    bbarc.compress(items, tmp_path / "compiled.bbarc", model=model, chunk_size=chunk)
    monkeypatch.setenv(choice.KERNELS_ENV, "light")
    monkeypatch.setattr(intnet, "TORCH_MIN_BATCH", 1 << 30)
    spent = choice._light_spent[0]
    bbarc.compress(items, tmp_path / "light.bbarc", model=model, chunk_size=chunk)
    assert choice._light_spent[0] > spent
    assert (tmp_path / "light.bbarc").read_bytes() == (tmp_path / "compiled.bbarc").read_bytes()
    with bbarc.open(tmp_path / "compiled.bbarc", cache_chunks=0) as a:
        for i in (chunk - 2, n - 1, chunk + 1):
            assert np.array_equal(a[i], items[i])
        assert np.array_equal(a[:], items)


def test_one_item_loads_neither_numba_nor_torch(mnist, tmp_path, monkeypatch):
    """The default rule (no BBARC_KERNELS) decodes one item light, in a fresh process."""
    path = tmp_path / "a.bbarc"
    bbarc.compress(mnist[:24], path, model="mnist-vae", chunk_size=12)
    monkeypatch.delenv(choice.KERNELS_ENV, raising=False)
    script = ("import sys, numpy as np, bbarc; a = bbarc.open(sys.argv[1]); x = a[int(sys.argv[2])]; "
              "np.save(sys.argv[3], x); print(sorted({'numba', 'torch'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script, str(path), "13", str(tmp_path / "x.npy")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    assert np.array_equal(np.load(tmp_path / "x.npy"), mnist[13])


def test_the_rule(monkeypatch):
    """Light for undeclared work within the budget, and for a declared job while its remaining items, at the light
    cost per item measured so far, fit in what is left of the budget; compiled past the budget, once numba is
    loaded, or when forced."""
    from bbarc import kernels, kernels_py

    def light() -> bool:
        chosen = choice.kernel("pop_uniform_lanes")
        assert chosen is kernels.pop_uniform_lanes or chosen.args == (kernels_py.pop_uniform_lanes,)  # timed
        return chosen is not kernels.pop_uniform_lanes

    budget = choice.LIGHT_BUDGET_S
    monkeypatch.delenv(choice.KERNELS_ENV, raising=False)
    monkeypatch.setattr(choice, "_light_spent", [0.0])
    monkeypatch.delitem(sys.modules, "numba", raising=False)  # as in a process that has not loaded numba
    assert light()
    with choice.job(int(budget / choice.LIGHT_ITEM_FLOOR_S) + 1):
        assert not light()  # too large even at the floor cost per item
    with choice.job(1000) as bulk:
        assert light()  # nothing measured yet
        bulk.spent = budget / 100  # as if the first item took that long: 999 more would overrun the budget
        choice.advance()
        assert not light()
        with choice.job(50) as few:
            few.spent, few.done = budget / 100, 1  # 49 more fit
            assert light()
            choice._light_spent[0] = budget * 0.9  # but not in what is left of it
            assert not light()
            choice._light_spent[0] = 0.0
        assert not light()  # the outer job again
    assert light()
    monkeypatch.setattr(choice, "_light_spent", [budget])
    assert not light()
    monkeypatch.setattr(choice, "_light_spent", [0.0])
    monkeypatch.setenv(choice.KERNELS_ENV, "compiled")
    assert not light()
    monkeypatch.setenv(choice.KERNELS_ENV, "light")
    monkeypatch.setitem(sys.modules, "numba", kernels)  # loaded: still light when forced
    assert light()
    monkeypatch.delenv(choice.KERNELS_ENV)
    assert not light()


def test_bulk_decoding_switches_to_compiled_kernels(tmp_path, mnist):
    """A whole archive in a fresh process: the compiled kernels after the first items (numba loaded)."""
    path = tmp_path / "a.bbarc"
    bbarc.compress(mnist, path, model="mnist-vae", chunk_size=len(mnist))  # 1,000 items: far past the budget
    script = "import sys, bbarc; bbarc.open(sys.argv[1])[:]; print(int('numba' in sys.modules))"
    env = {k: v for k, v in os.environ.items() if k != choice.KERNELS_ENV}
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True,
                         env=env)
    assert out.stdout.strip() == "1", out.stderr
