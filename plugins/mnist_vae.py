"""The BB-ANS paper's MNIST VAEs (8-bit and binarised), coded with integer-exact inference.

Architecture (``bbarc.plugins.training.vae``): MLP encoder 784-H-H-(2x50), logistic posterior over 50 latents,
standard logistic prior discretised into 2**12 equal-mass bins, MLP decoder 50-H-H-784x(params). The 8-bit
likelihood is a 2-component discretised logistic mixture per pixel; the binary one a Bernoulli per pixel; H = 512.
The v2 weight files (14-bit weights, 8-bit activations) run on the int8 backend of ``bbarc.plugins.intnet``; the v1
files (15-bit, 16-bit) on float64 and stay shipped to decode archives written with them.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from bbarc import fixedpoint as fp
from bbarc.codecs import LogisticMixture
from bbarc.errors import UsageError
from bbarc.hookspecs import hookimpl
from bbarc.model import ItemSpec, LatentLayer, Model, ModelFamily, check_spec, missing_weights
from bbarc.plugins.heads import bernoulli_codec, latent_codec, pixel_codec
from bbarc.plugins.intnet import build_nets
from bbarc.plugins.weightfiles import WeightsFile, find_shipped

LATENT_BITS = 12
SPEC = ItemSpec((28, 28), "uint8")


class MnistVAE(Model):
    """One MNIST VAE with one weights file (a value: it pickles with the file's bytes)."""

    item_shape = SPEC.shape
    item_dtype = "uint8"
    obs_precision = 20
    latent_precision = 20

    def __init__(self, family: str, weights: WeightsFile, binary: bool):
        self.family, self.weights, self.binary = family, weights, binary

    def __getstate__(self):
        return dict(family=self.family, weights=self.weights, binary=self.binary)  # not the built networks

    def __setstate__(self, state) -> None:
        self.__init__(**state)

    @property
    def _config(self) -> dict:
        return self.weights.contents[0]

    @cached_property
    def _nets(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(networks, output affine maps), built on first use: a process that only writes the archive while
        workers code (``--workers``) never builds them (nor imports torch)."""
        return build_nets(self.weights.contents[1])

    @cached_property
    def _logit_bound(self) -> float:
        nets, extra = self._nets
        return nets["dec"].affine_bound(extra["dec.out_mul"], extra["dec.out_add"])

    @property
    def latent_layers(self):
        return (LatentLayer((self._config["latent"],), LATENT_BITS),)

    def weights_sha256(self) -> str:
        return self.weights.sha256

    def get_config(self) -> dict:
        cfg = self._config
        return dict(super().get_config(),
                    architecture=dict(hidden=cfg["hidden"], mixtures=cfg["mixtures"], kind=cfg["kind"]))

    def check_items(self, items: np.ndarray) -> None:
        super().check_items(items)
        if self.binary and items.size and items.max() > 1:
            raise UsageError(
                f"model {self.id!r} codes binarised images (values 0 and 1), the input has values up to "
                f"{items.max()}; binarise it or use --model mnist-vae"
            )
    def posterior(self, layer: int, below: np.ndarray) -> LogisticMixture:
        nets, extra = self._nets
        out = nets["enc"].affine(below.reshape(len(below), -1), extra["enc.out_mul"], extra["enc.out_add"])
        return latent_codec(out, self._config["latent_log_scale_min"], LATENT_BITS, self.latent_precision, floor=False)

    def conditional(self, layer: int, above: np.ndarray) -> LogisticMixture:
        nets, extra = self._nets
        z = fp.logistic_bin_centres(LATENT_BITS)[above]
        out = nets["dec"].affine(z, extra["dec.out_mul"], extra["dec.out_add"])
        if self.binary:
            return bernoulli_codec(out, self.obs_precision, self._logit_bound)
        return pixel_codec(out, self._config["mixtures"], self._config["log_scale_min"], self.obs_precision)


class MnistVAEFamily(ModelFamily):
    """The 8-bit or the binarised MNIST VAE. ``files``: the weights it ships, newest first; new archives use the
    newest, and the older ones stay so that archives written with them still decode."""

    def __init__(self, family: str, files: tuple[str, ...], binary: bool):
        self.id, self.files, self.binary = family, files, binary
        self.description = (
            "binarised MNIST VAE (Bernoulli likelihood), items 28x28 uint8 in {0, 1}" if binary
            else "8-bit MNIST VAE (discretised logistic mixture likelihood), items 28x28 uint8"
        )

    def bind(self, spec: ItemSpec) -> MnistVAE:
        check_spec(self.id, spec, SPEC)
        return MnistVAE(self.id, WeightsFile.shipped(self.files[0]), self.binary)

    def from_config(self, config: dict) -> MnistVAE:
        weights = find_shipped(self.files, config.get("weights_sha256"))
        if weights is None:
            raise missing_weights(self.id, config.get("weights_sha256"))
        return MnistVAE(self.id, weights, self.binary)


@hookimpl
def register_models(register):
    # v2 files run as int8 products; the v1 files decode archives written with them
    register(MnistVAEFamily("mnist-vae", ("mnist-vae-2.npz", "mnist-vae.npz"), binary=False))
    register(MnistVAEFamily("mnist-vae-binary", ("mnist-vae-binary-2.npz", "mnist-vae-binary.npz"), binary=True))
