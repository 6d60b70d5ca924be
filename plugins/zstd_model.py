"""``zstd``: no latent model. Each chunk's items go into its zstd-compressed header, so any shape and dtype works."""
from __future__ import annotations

import hashlib

import numpy as np

from bbarc.hookspecs import hookimpl
from bbarc.model import ItemSpec, Model, ModelFamily

NO_WEIGHTS = hashlib.sha256(b"zstd: no weights").hexdigest()


class ZstdModel(Model):
    family = "zstd"

    def __init__(self, spec: ItemSpec):
        self.item_shape, self.item_dtype = spec.shape, spec.dtype.str

    def weights_sha256(self) -> str:
        return NO_WEIGHTS

    def get_config(self) -> dict:
        return dict(id=self.family, item_shape=list(self.item_shape), item_dtype=np.dtype(self.item_dtype).str,
                    weights_sha256=NO_WEIGHTS)

    def item_codec(self):
        return None  # model-free: every chunk is stored whole in its header


class ZstdFamily(ModelFamily):
    id = ZstdModel.family
    description = "no latent model: items stored zstd-compressed in the chunk header (any shape, any dtype)"

    def bind(self, spec: ItemSpec) -> ZstdModel:
        return ZstdModel(spec)

    def from_config(self, config: dict) -> ZstdModel:
        return ZstdModel(ItemSpec(config.get("item_shape", ()), config.get("item_dtype", "u1")))


@hookimpl
def register_models(register):
    register(ZstdFamily())
