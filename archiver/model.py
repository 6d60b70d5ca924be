"""The contract a model plugin fulfils (see README "Writing a model plugin").

A model is one object with a declared item shape/dtype and latent layout, and numpy-in/numpy-out methods that
return codecs (``bbarc.codecs``) whose parameters are integers. The chain calls them one item at a time when
decoding and may batch them when encoding, so a model MUST return exactly the same integers for an item whatever
the batch it comes in and whatever the thread count: ``bbarc.conformance`` checks this.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bbarc.errors import UsageError


@dataclass(frozen=True)
class LatentLayer:
    """One latent layer per item: ``shape`` values, each one of 2**bits bins of equal standard-logistic mass."""

    shape: tuple[int, ...]
    bits: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class Model:
    """Base class for model plugins. Subclasses set the class attributes and implement the methods.

    Layers are numbered from the data up: layer 0 is the item x, layer i >= 1 is latent z_i. A model with no
    latent layers and ``header_only = True`` stores whole chunks in the zstd header (the ``zstd`` model).
    """

    id: str = ""
    description: str = ""
    item_shape: tuple[int, ...] = ()  # () means "any shape" (header-only models)
    item_dtype: str | None = None  # None means "any dtype" (header-only models)
    latent_layers: tuple[LatentLayer, ...] = ()
    header_only: bool = False
    obs_precision: int = 16  # bits of the integer frequencies of p(x | z1)
    latent_precision: int = 20  # bits of the integer frequencies of q(z_i | .) and p(z_i | z_{i+1})

    def weights_sha256(self) -> str:
        """sha256 of the weights the integers come from; an archive is only decoded with the same weights."""
        raise NotImplementedError

    def with_weights(self, sha256: str) -> "Model | None":
        """This model with the weights of hash ``sha256``, to decode an archive written by an earlier version of
        the plugin; None if the plugin does not ship them. New archives always use the default weights."""
        return self if self.weights_sha256() == sha256 else None

    def item_codec(self):
        """The codec of one item per lane (``bbarc.codecs.Codec``), or None when chunks are stored whole in their
        header (``header_only``)."""
        from .bitsback import bitswap

        return None if self.header_only else bitswap(self)

    def posterior(self, layer: int, below: np.ndarray):
        """q(z_layer | below) for a batch: ``below`` is items (layer 1) or bin indices of z_{layer-1}."""
        raise NotImplementedError

    def conditional(self, layer: int, above: np.ndarray):
        """p(below | z_layer) for a batch: a codec over layer-1 values (items when layer == 1)."""
        raise NotImplementedError

    def to_symbols(self, items: np.ndarray) -> np.ndarray:
        """Items (B, *item_shape) -> int64 symbols (B, n) for the likelihood codec; inverse of ``from_symbols``."""
        return items.reshape(len(items), -1).astype(np.int64)

    def from_symbols(self, symbols: np.ndarray) -> np.ndarray:
        return symbols.reshape((len(symbols), *self.item_shape)).astype(self.item_dtype)

    def check_items(self, items: np.ndarray) -> None:
        """Raise UsageError (saying what to do) when this model cannot code ``items`` (B, *item_shape)."""
        if self.item_shape and tuple(items.shape[1:]) != tuple(self.item_shape):
            raise UsageError(
                f"model {self.id!r} codes items of shape {tuple(self.item_shape)}, the input has items of shape "
                f"{tuple(items.shape[1:])}; pick another model (see `bbarc models`) or use --model zstd"
            )
        if self.item_dtype is not None and items.dtype != np.dtype(self.item_dtype):
            raise UsageError(
                f"model {self.id!r} codes {self.item_dtype} items, the input is {items.dtype}; convert it or use "
                "--model zstd"
            )

    def info(self) -> dict:
        """What an archive records about the model (besides id, distribution, version and weights hash)."""
        return dict(
            item_shape=list(self.item_shape), item_dtype=self.item_dtype, header_only=self.header_only,
            latent_layers=[dict(shape=list(layer.shape), bits=layer.bits) for layer in self.latent_layers],
            obs_precision=self.obs_precision, latent_precision=self.latent_precision,
        )
