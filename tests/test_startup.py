"""Start-up (issue 12, item 3): commands that code nothing load neither torch nor numba, and a kernel's first
compilation is announced."""
import os
import subprocess
import sys

import pytest

from bbarc import jit

HEAVY = ("torch", "numba", "llvmlite", "scipy", "h5py", "pydantic", "typer")


def imported_modules(*args, env=None) -> set[str]:
    """Every module a fresh ``bbarc ARGS`` process imports (``python -X importtime``), after checking it ran."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "bbarc.cli", *map(str, args)],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line.split("|") for line in run.stderr.splitlines() if line.startswith("import time:")]
    return {cells[-1].strip() for cells in lines if len(cells) == 3} - {"package"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory, mnist):
    path = tmp_path_factory.mktemp("startup") / "a.bbarc"
    import bbarc

    bbarc.compress(mnist[:12], path, model="mnist-vae", chunk_size=6)
    return path


@pytest.mark.parametrize("args", [["info", "{a}"], ["info", "{a}", "--json"], ["verify", "{a}"], ["models"],
                                  ["models", "--json"], ["--help"], ["info", "--help"], ["--version"]])
def test_commands_that_code_nothing_load_no_heavy_module(archive, args):
    modules = imported_modules(*[a.format(a=archive) for a in args])
    assert {"click", "bbarc.display"} <= modules  # the check sees the command's imports
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, heavy


def test_the_check_sees_a_heavy_import(archive, tmp_path):
    """`get` with the compiled kernels forced loads numba: the test above would notice a command that did. (Left
    to choose, `get` of one item takes the light kernels and loads neither numba nor torch.)"""
    env = {**os.environ, "BBARC_KERNELS": "compiled"}
    assert "numba" in imported_modules("get", archive, 3, "-o", tmp_path / "x.npy", env=env)
    light = imported_modules("get", archive, 3, "-o", tmp_path / "y.npy")
    assert not {"numba", "torch"} & light


def test_kernels_bind_to_numba_on_first_call():
    code = ("import sys\nfrom bbarc import fixedpoint, kernels\nassert 'numba' not in sys.modules\n"
            "import numpy as np\nout = np.empty((1, 2), np.int64)\n"
            "kernels.mixture_weights(np.array([[0, -16]]), fixedpoint.weight_table(), out)\n"
            "assert out.tolist() == fixedpoint.mixture_weights([[0, -16]]).tolist() == [[4096, 1507]]\n"
            "import numba\nassert isinstance(kernels.mixture_weights, numba.core.registry.CPUDispatcher)\n"
            "assert isinstance(kernels.pop_mixture, numba.core.registry.CPUDispatcher)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_first_compilation_is_announced_once(tmp_path):
    """With an empty numba cache the first kernel call says it compiles; once cached, nothing is said."""
    code = ("import numpy as np\nfrom bbarc import fixedpoint, kernels\nout = np.empty((1, 2), np.int64)\n"
            "kernels.mixture_weights(np.array([[0, -16]]), fixedpoint.weight_table(), out)\nprint(out.tolist())\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    notice = jit.NOTICE.split("(")[0]
    assert first.stdout == second.stdout == "[[4096, 1507]]\n"
    assert first.stderr.count(notice) == 1, first.stderr
    assert notice not in second.stderr, second.stderr



def test_kernels_load_without_scipy_linalg_and_numba_keeps_blas():
    """numba's target comes up without importing scipy.linalg (bbarc.jit), and np.dot compiled afterwards in the
    same process still calls BLAS."""
    pytest.importorskip("scipy")
    code = ("import sys, numpy as np, numba\nfrom bbarc import fixedpoint, kernels\n"
            "import numpy as np\nout = np.empty((1, 2), np.int64)\n"
            "kernels.mixture_weights(np.array([[0, -16]]), fixedpoint.weight_table(), out)\n"
            "assert out.tolist() == fixedpoint.mixture_weights([[0, -16]]).tolist() == [[4096, 1507]]\n"
            "assert 'scipy.linalg' not in sys.modules, 'scipy.linalg loaded'\n"
            "dot = numba.njit(lambda a, b: np.dot(a, b))\n"
            "assert dot(np.ones((2, 3)), np.ones((3, 2))).tolist() == [[3.0, 3.0], [3.0, 3.0]]\n"
            "assert 'scipy.linalg.cython_blas' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
