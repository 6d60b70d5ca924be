"""``example-binary-8x8``: a mixture of 16 Bernoulli images for 8x8 binary items, coded with bits-back.

The latent z (one value, 4 bits) picks a component; the prior is uniform over the 16 components, which is the
uniform top layer bbarc's chain pushes. p(x | z) is a Bernoulli per pixel (a logistic of scale 1 on bbarc's binary
grid, whose mean is the pixel's logit); q(z | x) is the exact posterior, from integer log-likelihood tables.

Everything the coder sees is integer arithmetic on the shipped integer weights, so the same item gives the same
integers whatever the batch, thread or machine (``bbarc.conformance`` checks it). The weights (``weights/*.npz``,
made by ``python -m bbarc_example.train``) hold:

* ``logits`` (16, 64): each pixel's logit of being 1, fixed point with ``bbarc.fixedpoint.POS_BITS`` bits;
* ``loglik`` (2, 16, 64): log p(pixel = v | z) in units of 1/16 nat (``bbarc.fixedpoint.mixture_weights``'s unit).
"""
from __future__ import annotations

import hashlib
import io
from functools import cached_property
from importlib.resources import files

import numpy as np

from bbarc import fixedpoint as fp
from bbarc.codecs import Categorical, Grid, LogisticMixture
from bbarc.errors import ModelError, UsageError
from bbarc.hookspecs import hookimpl
from bbarc.model import ItemSpec, LatentLayer, Model, ModelFamily, check_spec, missing_weights

FAMILY = "example-binary-8x8"
SPEC = ItemSpec((8, 8), "uint8")
COMPONENTS = 16
FILES = ("bernoulli-mixture-8x8.npz",)  # newest first; a file stays shipped while archives name it


def shipped(name: str) -> bytes:
    try:
        return (files("bbarc_example") / "weights" / name).read_bytes()
    except FileNotFoundError:
        raise ModelError(f"weights file {name} is missing from bbarc-example-plugin; reinstall it") from None


class BinaryMixture(Model):
    """The model bound to 8x8 uint8 items: a value holding its weights' bytes (it pickles with them)."""

    family = FAMILY
    item_shape = SPEC.shape
    item_dtype = "uint8"
    latent_layers = (LatentLayer((1,), 4),)
    obs_precision = 16
    latent_precision = 16

    def __init__(self, weights: bytes):
        self.weights = weights

    def __getstate__(self):
        return {"weights": self.weights}  # not the parsed tables

    def __setstate__(self, state) -> None:
        self.__init__(**state)

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        try:
            with np.load(io.BytesIO(self.weights)) as z:
                logits, loglik = z["logits"].astype(np.int64), z["loglik"].astype(np.int64)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{FAMILY}: the weights file does not parse ({exc})") from None
        if logits.shape != (COMPONENTS, 64) or loglik.shape != (2, COMPONENTS, 64):
            raise ModelError(f"{FAMILY}: the weights file holds tables of the wrong shape")
        return logits, loglik

    def weights_sha256(self) -> str:
        return hashlib.sha256(self.weights).hexdigest()

    def get_config(self) -> dict:
        return dict(super().get_config(), architecture=dict(components=COMPONENTS))

    def check_items(self, items: np.ndarray) -> None:
        super().check_items(items)
        if items.size and items.max() > 1:
            raise UsageError(f"model {FAMILY!r} codes binary items (values 0 and 1), the input has values up to "
                             f"{items.max()}; binarise it or use --model zstd")

    def posterior(self, layer: int, below: np.ndarray) -> Categorical:
        """q(z | x) = p(z | x): the integer log-likelihood of each component, an integer softmax, then integer
        frequencies summing to 2**latent_precision (each at least 1, the remainder to the likeliest)."""
        _, loglik = self._tables
        x = below.reshape(len(below), -1).astype(np.int64)
        scores = x @ loglik[1].T + (1 - x) @ loglik[0].T  # int64 products: exact, whatever the batch
        weights = fp.mixture_weights(scores)
        total = 1 << self.latent_precision
        freq = 1 + weights * (total - COMPONENTS) // weights.sum(axis=1, keepdims=True)
        freq[np.arange(len(freq)), weights.argmax(axis=1)] += total - freq.sum(axis=1)
        cdf = np.concatenate([np.zeros((len(freq), 1), np.int64), np.cumsum(freq, axis=1)], axis=1)
        return Categorical(cdf, self.latent_precision)

    def conditional(self, layer: int, above: np.ndarray) -> LogisticMixture:
        """p(x | z): a Bernoulli per pixel, P(1) = sigmoid(logit), on bbarc's binary grid."""
        logits, _ = self._tables
        mean = logits[above.reshape(len(above))].reshape(-1)
        return LogisticMixture(Grid.binary(), mean, 0, 1, self.obs_precision)


class BinaryMixtureFamily(ModelFamily):
    id = FAMILY
    description = "example plugin: mixture of 16 Bernoulli images, items 8x8 uint8 in {0, 1}"

    def bind(self, spec: ItemSpec) -> BinaryMixture:
        check_spec(self.id, spec, SPEC)
        return BinaryMixture(shipped(FILES[0]))

    def from_config(self, config: dict) -> BinaryMixture:
        for name in FILES:
            weights = shipped(name)
            if hashlib.sha256(weights).hexdigest() == config.get("weights_sha256"):
                return BinaryMixture(weights)
        raise missing_weights(self.id, config.get("weights_sha256"))


@hookimpl
def register_models(register):
    register(BinaryMixtureFamily())
