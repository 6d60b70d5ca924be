"""``zstd``: no latent model. Each chunk's items go into its zstd-compressed header, so any shape and dtype works."""
from __future__ import annotations

import hashlib

from bbarc.hookspecs import hookimpl
from bbarc.model import Model


class ZstdModel(Model):
    id = "zstd"
    description = "no latent model: items stored zstd-compressed in the chunk header (any shape, any dtype)"
    header_only = True

    def weights_sha256(self) -> str:
        return hashlib.sha256(b"zstd: no weights").hexdigest()


@hookimpl
def register_models(register):
    register("zstd", ZstdModel)
