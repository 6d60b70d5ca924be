"""The shipped weights are reproducible by our scripts: train briefly, export, and code with the result."""
import subprocess
import sys

import pytest

from bbarc.conformance import check_model
from bbarc.plugins.mnist_hvae import MnistHVAE
from bbarc.plugins.mnist_vae import MnistVAE
from bbarc.plugins.weightfiles import WeightsFile
from tests.helpers import SHARED_MNIST

needs_mnist = pytest.mark.skipif(not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists(),
                                 reason="needs MNIST in ../shared/data/mnist")


def _run(module: str, *args) -> None:
    subprocess.run([sys.executable, "-m", f"bbarc.plugins.training.{module}", *map(str, args), "--data", SHARED_MNIST],
                   check=True, capture_output=True)


@needs_mnist
@pytest.mark.parametrize("kind", ["8bit", "binary"])
def test_train_export_and_code(tmp_path, kind, mnist, mnist_binary):
    ckpt, weights = tmp_path / "m.pt", tmp_path / "m.npz"
    _run("train_vae", "--kind", kind, "--out", ckpt, "--epochs", 1, "--limit", 300, "--hidden", 32, "--latent", 8)
    _run("export", ckpt, weights, "--calibration", 300)
    model = MnistVAE("smoke", WeightsFile.from_path(weights), binary=kind == "binary")
    check_model(model, (mnist_binary if kind == "binary" else mnist)[:4])


@needs_mnist
def test_train_export_and_code_hvae(tmp_path, mnist):
    ckpt, weights = tmp_path / "h.pt", tmp_path / "h.npz"
    _run("train_hvae", "--out", ckpt, "--epochs", 1, "--limit", 200, "--width", 8, "--threads", 1)
    _run("export_hvae", ckpt, weights, "--calibration", 200)
    check_model(MnistHVAE(WeightsFile.from_path(weights)), mnist[:3])


def test_training_needs_a_data_folder(monkeypatch):
    monkeypatch.delenv("BBARC_DATA", raising=False)
    proc = subprocess.run([sys.executable, "-m", "bbarc.plugins.training.train_vae", "--kind", "8bit", "--out", "x.pt"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--data" in proc.stderr
