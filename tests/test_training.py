"""The shipped weights are reproducible by our scripts: train briefly, export, and code with the result."""
import subprocess
import sys
from pathlib import Path

import pytest

from bbarc.conformance import check_model
from bbarc.plugins.mnist_vae import MnistVAE
from tests.conftest import SHARED_MNIST


@pytest.mark.skipif(not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists(), reason="needs ../shared MNIST")
@pytest.mark.parametrize("kind", ["8bit", "binary"])
def test_train_export_and_code(tmp_path, kind, mnist, mnist_binary):
    ckpt, weights = tmp_path / "m.pt", tmp_path / "m.npz"
    common = ["--limit", "300", "--hidden", "32", "--latent", "8"]
    subprocess.run([sys.executable, "-m", "bbarc.plugins.training.train_vae", "--kind", kind, "--out", ckpt, "--epochs", "1",
                    *common], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "bbarc.plugins.training.export", ckpt, weights, "--calibration", "300"],
                   check=True, capture_output=True)
    model = MnistVAE("smoke", Path(weights), binary=kind == "binary")
    check_model(model, (mnist_binary if kind == "binary" else mnist)[:4])


@pytest.mark.skipif(not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists(), reason="needs ../shared MNIST")
def test_train_export_and_code_hvae(tmp_path, mnist):
    from bbarc.plugins.mnist_hvae import MnistHVAE

    ckpt, weights = tmp_path / "h.pt", tmp_path / "h.npz"
    subprocess.run([sys.executable, "-m", "bbarc.plugins.training.train_hvae", "--out", ckpt, "--epochs", "1", "--limit",
                    "200", "--width", "8", "--threads", "1"], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "bbarc.plugins.training.export_hvae", ckpt, weights, "--calibration", "200"],
                   check=True, capture_output=True)
    check_model(MnistHVAE(Path(weights)), mnist[:3])
