"""The contract a model plugin fulfils (see README "Writing a model plugin").

A plugin registers a **family** (``ModelFamily``): an id, a description, and ``bind(spec)``, which gives the
**model** that codes a dataset's items of one shape and dtype (as zarr v3 codecs evolve from the array spec), or
raises ``UsageError`` saying why it cannot. A model is a value: ``get_config()`` is a JSON object from which the
family's ``from_config`` rebuilds the same model. An archive records the config of the model that wrote it, and
decoding rebuilds the model from it.

**What an id and a config promise** (as numcodecs codec ids do): a family id names one coding scheme forever. The
same config (it holds the weights' sha256) gives the same integers for the same item in every later version of the
plugin, on every machine, whatever the batch, thread count or lockstep width. A change that would code anything
differently gets a new id, a new config value or new weights; a plugin keeps the weights of every config it ever
wrote so that old archives decode.

A model codes one item per ANS lane through ``item_codec()``: by default the Bit-Swap chain over
``latent_layers`` built from ``posterior``/``conditional`` (``bbarc.bitsback``); a model of another shape returns
its own codec. The methods take numpy arrays and return codecs whose parameters are integers, the same for an
item whatever the batch it comes in: ``bbarc.conformance`` checks this.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bbarc.errors import ModelError, UsageError


@dataclass(frozen=True)
class ItemSpec:
    """What a family binds to: the shape and dtype of every item of a dataset."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def item_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def dims(self) -> int:
        """Values per item (bits/dim divides by this)."""
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class LatentLayer:
    """One latent layer per item: ``shape`` values, each one of 2**bits bins of equal standard-logistic mass."""

    shape: tuple[int, ...]
    bits: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class Model:
    """A model bound to one item shape and dtype. Subclasses set the attributes and implement the methods.

    Layers are numbered from the data up: layer 0 is the item x, layer i >= 1 is latent z_i.
    """

    family: str = ""  # the id of the family that built it (set by the family)
    description: str = ""
    item_shape: tuple[int, ...]
    item_dtype: str
    latent_layers: tuple[LatentLayer, ...] = ()
    obs_precision: int = 16  # bits of the integer frequencies of p(x | z1)
    latent_precision: int = 20  # bits of the integer frequencies of q(z_i | .) and p(z_i | z_{i+1})

    @property
    def id(self) -> str:
        return self.family

    @property
    def spec(self) -> ItemSpec:
        return ItemSpec(self.item_shape, self.item_dtype)

    def weights_sha256(self) -> str:
        """sha256 of the weights the integers come from (64 hex digits)."""
        raise NotImplementedError

    def get_config(self) -> dict:
        """Everything ``from_config`` needs to rebuild this model, as JSON. Subclasses add their own keys."""
        return dict(
            id=self.family, item_shape=list(self.item_shape), item_dtype=np.dtype(self.item_dtype).str,
            weights_sha256=self.weights_sha256(), obs_precision=self.obs_precision,
            latent_precision=self.latent_precision,
            latent_layers=[dict(shape=list(layer.shape), bits=layer.bits) for layer in self.latent_layers],
        )

    def item_codec(self):
        """The codec of one item per lane (``bbarc.codecs.Codec``), or None for a model-free family whose chunks
        are stored whole in their zstd-compressed header."""
        from .bitsback import bitswap

        return bitswap(self)

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
        """Raise UsageError (saying what to do) when this model cannot code ``items`` (B, *item_shape): values
        outside its range, say. Shape and dtype were checked when the family bound it."""
        check_spec(self.family, ItemSpec(items.shape[1:], items.dtype), self.spec)

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.family, self.weights_sha256()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.family!r}, {self.item_shape}, {np.dtype(self.item_dtype)})"


class ModelFamily:
    """What a plugin registers. Subclasses set ``id`` and ``description`` and implement ``bind``/``from_config``."""

    id: str = ""
    description: str = ""

    def bind(self, spec: ItemSpec) -> Model:
        """The model that codes items of ``spec``; UsageError (saying what to do) if this family cannot."""
        raise NotImplementedError

    def from_config(self, config: dict) -> Model:
        """The model an archive recorded (``Model.get_config``); ModelError if this plugin version cannot
        rebuild it (e.g. it does not ship those weights)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"


def check_spec(family: str, got: ItemSpec, want: ItemSpec) -> None:
    """UsageError unless ``got`` is ``want`` (a fixed-shape family binding to a dataset)."""
    if got.shape != want.shape:
        raise UsageError(
            f"model {family!r} codes items of shape {want.shape}, the input has items of shape {got.shape}; pick "
            "another model (see `bbarc models`) or use --model zstd"
        )
    if got.dtype != want.dtype:
        raise UsageError(f"model {family!r} codes {want.dtype} items, the input is {got.dtype}; convert it or use "
                         "--model zstd")


def missing_weights(family: str, sha256: str) -> ModelError:
    return ModelError(f"model {family!r} has no weights with sha256 {str(sha256)[:16]}…: install the plugin version "
                      "that wrote the archive")
