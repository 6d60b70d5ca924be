"""The layering contract (pyproject.toml, [tool.importlinter]) holds.

import-linter scans a package's folder, but bbarc's subpackages live in separate repository folders mapped by
setuptools' package-dir, so the test lays the package out as it is installed (copies of the sources, from the
same package-dir table) and lints that.
"""
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def installed_layout(target: Path) -> Path:
    """Copy the sources into ``target`` as the installed package ``bbarc`` is laid out; returns ``target``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, folder in sorted(config["package-dir"].items()):
        dest = target.joinpath(*package.split("."))
        dest.mkdir(parents=True, exist_ok=True)
        for source in (ROOT / folder).glob("*.py"):
            shutil.copy2(source, dest / source.name)
    return target


def lint(tree: Path) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1]))"
    return subprocess.run([sys.executable, "-c", code, str(ROOT / "pyproject.toml")], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


def test_the_layers_contract_holds(tmp_path):
    pytest.importorskip("importlinter")
    run = lint(installed_layout(tmp_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_the_contract_catches_a_wrong_import(tmp_path):
    """A formats module that imports the coder (a layer above it) breaks the contract."""
    pytest.importorskip("importlinter")
    tree = installed_layout(tmp_path)
    with open(tree / "bbarc" / "formats" / "layout.py", "a") as f:
        f.write("\nfrom bbarc import chain  # noqa: E402  (deliberately wrong)\n")
    run = lint(tree)
    assert run.returncode != 0 and "bbarc.formats.layout -> bbarc.chain" in run.stdout, run.stdout[-3000:]


def test_the_package_root_and_formats_load_no_coder(tmp_path):
    """import-linter sees static imports only; the root's lazy re-exports are checked by importing."""
    code = ("import sys, bbarc, bbarc.formats.container, bbarc.formats.inputs, bbarc.formats.outputs, bbarc.errors\n"
            "heavy = {'torch', 'numba', 'bbarc.codecs', 'bbarc.chain', 'bbarc.plugins'} & set(sys.modules)\n"
            "assert not heavy, heavy\n"
            "assert callable(bbarc.compress) and callable(bbarc.open) and 'bbarc.codecs' in sys.modules\n"
            "assert 'numba' not in sys.modules  # the coder loads numba only when it needs the compiled kernels\n")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)


def test_the_contract_keeps_torch_out_of_bbarc_data(tmp_path):
    """bbarc.data may reach torch through its adapter (bbarc.torch_data) only, never by importing it itself."""
    pytest.importorskip("importlinter")
    tree = installed_layout(tmp_path)
    with open(tree / "bbarc" / "data.py", "a") as f:
        f.write("\nimport torch  # noqa: E402  (deliberately wrong)\n")
    run = lint(tree)
    assert run.returncode != 0 and "bbarc.data -> torch" in run.stdout, run.stdout[-3000:]
