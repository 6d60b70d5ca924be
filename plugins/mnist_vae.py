"""The BB-ANS paper's MNIST VAEs (8-bit and binarised), coded with integer-exact inference.

Architecture (``bbarc.plugins.training.vae``): MLP encoder 784-H-H-(2x50), logistic posterior over 50 latents,
standard logistic prior discretised into 2**12 equal-mass bins, MLP decoder 50-H-H-784x(params). The 8-bit
likelihood is a 2-component discretised logistic mixture per pixel; the binary one a Bernoulli per pixel; H = 512.
The v2 weight files (14-bit weights, 8-bit activations) run on the int8 backend of ``bbarc.plugins.intnet``; the v1
files (15-bit, 16-bit) on float64 and stay shipped to decode archives written with them.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from bbarc import fixedpoint as fp
from bbarc.codecs import Grid, LogisticMixture
from bbarc.hookspecs import hookimpl
from bbarc.model import LatentLayer, Model
from bbarc.errors import UsageError
from bbarc.plugins.intnet import affine_floor, build_nets
from bbarc.plugins.weightfiles import load_model_weights, read_weights

LATENT_BITS = 12


class MnistVAE(Model):
    item_shape = (28, 28)
    item_dtype = "uint8"
    obs_precision = 20
    latent_precision = 20

    def __init__(self, model_id: str, weights: str | Path, binary: bool, older: tuple[str | Path, ...] = ()):
        """``weights``: a file name shipped in ``plugins/weights`` or a path (e.g. a freshly exported file);
        ``older``: earlier weight files of the same model, kept so that archives written with them still decode."""
        self.id = model_id
        self.binary = binary
        self.weights = weights
        self.older = older
        self.description = (
            "binarised MNIST VAE (Bernoulli likelihood), items 28x28 uint8 in {0, 1}" if binary
            else "8-bit MNIST VAE (discretised logistic mixture likelihood), items 28x28 uint8"
        )

    @cached_property
    def _file(self) -> tuple[dict, dict[str, np.ndarray], str]:
        """(config, arrays, sha256) of the weights file. Enough for metadata: a process that only writes the
        archive while workers code (``--workers``) never builds the networks (nor imports torch)."""
        return load_model_weights(self.id, self.weights, read_weights)

    @cached_property
    def _nets(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(networks, output affine maps)."""
        return build_nets(self._file[1])

    @property
    def latent_layers(self):
        return (LatentLayer((self._file[0]["latent"],), LATENT_BITS),)

    def weights_sha256(self) -> str:
        return self._file[2]

    def with_weights(self, sha256: str) -> MnistVAE | None:
        if sha256 == self.weights_sha256():
            return self
        for weights in self.older:
            other = MnistVAE(self.id, weights, self.binary)
            if other.weights_sha256() == sha256:
                return other
        return None

    def info(self) -> dict:
        cfg = self._file[0]
        return dict(super().info(), architecture=dict(hidden=cfg["hidden"], mixtures=cfg["mixtures"], kind=cfg["kind"]))

    def check_items(self, items: np.ndarray) -> None:
        super().check_items(items)
        if self.binary and items.size and items.max() > 1:
            raise UsageError(
                f"model {self.id!r} codes binarised images (values 0 and 1), the input has values up to "
                f"{items.max()}; binarise it or use --model mnist-vae"
            )

    def posterior(self, layer: int, below: np.ndarray) -> LogisticMixture:
        nets, extra = self._nets
        acc = nets["enc"](below.reshape(len(below), -1))
        out = affine_floor(acc, extra["enc.out_mul"], extra["enc.out_add"])
        n = out.shape[1] // 2
        log_scale_min = int(np.floor(self._file[0]["latent_log_scale_min"] * fp.LOG_SCALE_STEP))
        return LogisticMixture(
            Grid.latent(LATENT_BITS), out[:, :n].reshape(-1), np.maximum(out[:, n:], log_scale_min).reshape(-1),
            1, self.latent_precision, floor=False,
        )

    def conditional(self, layer: int, above: np.ndarray) -> LogisticMixture:
        cfg, (nets, extra) = self._file[0], self._nets
        z = fp.logistic_bin_centres(LATENT_BITS)[above]
        out = affine_floor(nets["dec"](z), extra["dec.out_mul"], extra["dec.out_add"])
        if self.binary:
            return LogisticMixture(Grid.binary(), out.reshape(-1), 0, 1, self.obs_precision)
        k = cfg["mixtures"]
        out = out.reshape(-1, 3 * k)
        log_scale_min = int(np.floor((cfg["log_scale_min"] + np.log(127.5)) * fp.LOG_SCALE_STEP))
        return LogisticMixture(
            Grid.levels(256), out[:, k : 2 * k], np.maximum(out[:, 2 * k :], log_scale_min),
            fp.mixture_weights(out[:, :k]), self.obs_precision,
        )


@hookimpl
def register_models(register):
    # v2 files run as int8 products (8x faster than float32); the v1 files decode archives written with them
    register("mnist-vae", lambda: MnistVAE("mnist-vae", "mnist-vae-2.npz", binary=False, older=("mnist-vae.npz",)))
    register("mnist-vae-binary", lambda: MnistVAE(
        "mnist-vae-binary", "mnist-vae-binary-2.npz", binary=True, older=("mnist-vae-binary.npz",)))
