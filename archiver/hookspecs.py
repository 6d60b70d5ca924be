"""pluggy hook specifications: what a bbarc plugin may implement."""
from __future__ import annotations

import pluggy

PROJECT = "bbarc"  # also the entry-point group plugins register under
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register):
    """Call ``register(model_id, factory)`` for each model; ``factory()`` returns an ``bbarc.model.Model``.

    Factories are called lazily, only when a model is used, so listing models stays cheap.
    """
