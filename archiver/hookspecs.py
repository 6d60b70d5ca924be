"""pluggy hook specifications: what a bbarc plugin may implement."""
from __future__ import annotations

import pluggy

PROJECT = "bbarc"  # also the entry-point group plugins register under
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register):
    """Call ``register(family)`` for each ``bbarc.model.ModelFamily`` the plugin provides; its ``id`` is the
    model id users name. Keep families cheap to construct (load weights on first use), so that listing models
    stays cheap.
    """
