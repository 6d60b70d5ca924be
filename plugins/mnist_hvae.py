"""``mnist-hvae``: a two-layer hierarchical VAE coded with Bit-Swap, integer-exact convolutional inference.

z1: 2x14x14, z2: 4x7x7 logistic latents on fixed bins of equal standard-logistic mass (fixed, as Bit-Swap
needs: a layer is popped before the layer above exists); p(z1|z2) logistic; p(x|z1) a 5-component
discretised logistic mixture per pixel. Networks: ``bbarc.plugins.training.hvae``.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from bbarc import fixedpoint as fp
from bbarc.codecs import LogisticMixture
from bbarc.hookspecs import hookimpl
from bbarc.model import ItemSpec, LatentLayer, Model, ModelFamily, check_spec, missing_weights
from bbarc.plugins.intconv import build_nets
from bbarc.plugins.heads import latent_codec, pixel_codec
from bbarc.plugins.intnet import affine_floor
from bbarc.plugins.weightfiles import WeightsFile, find_shipped

LATENT_BITS = 12


SPEC = ItemSpec((28, 28), "uint8")
FILES = ("mnist-hvae.npz",)  # newest first; older files stay so that their archives decode


class MnistHVAE(Model):
    family = "mnist-hvae"
    item_shape = SPEC.shape
    item_dtype = "uint8"
    obs_precision = 22
    latent_precision = 26  # single-component latent codecs allow 26 bits: the >=1 floor then costs ~nothing

    def __init__(self, weights: WeightsFile):
        self.weights = weights

    def __getstate__(self):
        return dict(weights=self.weights)  # not the built networks

    def __setstate__(self, state) -> None:
        self.__init__(**state)

    @cached_property
    def _loaded(self):
        """(config, networks, other arrays, sha256)."""
        meta, arrays = self.weights.contents
        return (meta["config"], *build_nets(meta, arrays), self.weights.sha256)

    @property
    def latent_layers(self):
        cfg = self.weights.contents[0]["config"]
        return (LatentLayer((cfg["z1"], 14, 14), LATENT_BITS), LatentLayer((cfg["z2"], 7, 7), LATENT_BITS))

    def weights_sha256(self) -> str:
        return self.weights.sha256

    def get_config(self) -> dict:
        cfg = self.weights.contents[0]["config"]
        return dict(super().get_config(), architecture={k: cfg[k] for k in ("width", "blocks", "mixtures")})

    def _run(self, name: str, inputs: np.ndarray) -> np.ndarray:
        """Network ``name`` on integer inputs -> integer outputs (B, C, H, W) in the codec's units."""
        _, nets, extra, _ = self._loaded
        acc = nets[name](inputs)
        return affine_floor(acc, extra[f"{name}.out_mul"][:, None, None], extra[f"{name}.out_add"][:, None, None])

    def _latent_codec(self, out: np.ndarray, floor: bool) -> LogisticMixture:
        return latent_codec(out, self._loaded[0]["latent_log_scale_min"], LATENT_BITS, self.latent_precision, floor)

    def _centres(self, bins: np.ndarray, layer: int) -> np.ndarray:
        return fp.logistic_bin_centres(LATENT_BITS)[bins].reshape((len(bins), *self.latent_layers[layer - 1].shape))

    def posterior(self, layer: int, below: np.ndarray) -> LogisticMixture:
        if layer == 1:
            pixels = below.reshape(len(below), 1, 28, 28).astype(np.float64) * 2 - 255  # zero = mid-grey, as trained
            return self._latent_codec(self._run("q1", pixels), floor=False)
        return self._latent_codec(self._run("q2", self._centres(below, 1)), floor=False)

    def conditional(self, layer: int, above: np.ndarray) -> LogisticMixture:
        if layer == 2:
            return self._latent_codec(self._run("p1", self._centres(above, 2)), floor=True)
        cfg = self._loaded[0]
        out = self._run("px", self._centres(above, 1)).transpose(0, 2, 3, 1)
        return pixel_codec(out, cfg["mixtures"], cfg["log_scale_min"], self.obs_precision)


class MnistHVAEFamily(ModelFamily):
    id = MnistHVAE.family
    description = "hierarchical (2-layer, Bit-Swap) convolutional VAE for 8-bit MNIST, items 28x28 uint8"

    def bind(self, spec: ItemSpec) -> MnistHVAE:
        check_spec(self.id, spec, SPEC)
        return MnistHVAE(WeightsFile.shipped(FILES[0]))

    def from_config(self, config: dict) -> MnistHVAE:
        weights = find_shipped(FILES, config.get("weights_sha256"))
        if weights is None:
            raise missing_weights(self.id, config.get("weights_sha256"))
        return MnistHVAE(weights)


@hookimpl
def register_models(register):
    register(MnistHVAEFamily())
