"""Finds model plugins through the ``bbarc`` entry-point group (built-ins register the same way)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import pluggy

from bbarc.errors import ModelError, UsageError

from . import hookspecs
from .model import Model


@dataclass(frozen=True)
class ModelEntry:
    id: str
    factory: Callable[[], Model]
    plugin: str  # the registering module
    distribution: str
    version: str


def _manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    return pm


@lru_cache(maxsize=1)
def plugin_manager() -> pluggy.PluginManager:
    return _manager()


def model_entries(pm: pluggy.PluginManager | None = None) -> dict[str, ModelEntry]:
    pm = pm or plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    entries: dict[str, ModelEntry] = {}
    for impl in pm.hook.register_models.get_hookimpls():
        dist = dists.get(id(impl.plugin))
        name, version = (dist.project_name, dist.version) if dist else ("(not installed)", "")

        def register(model_id: str, factory, _impl=impl, _name=name, _version=version):
            if model_id in entries:
                other = entries[model_id]
                raise UsageError(
                    f"model id {model_id!r} is registered twice: by {other.plugin} ({other.distribution}) and by "
                    f"{_impl.plugin_name} ({_name}); uninstall one of them"
                )
            entries[model_id] = ModelEntry(model_id, factory, _impl.plugin_name, _name, _version)

        impl.function(register=register)
    return entries


def list_plugins(pm: pluggy.PluginManager | None = None) -> list[dict]:
    pm = pm or plugin_manager()
    out = []
    for plugin, dist in pm.list_plugin_distinfo():
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append(dict(name=pm.get_name(plugin), distribution=dist.project_name, version=dist.version, hooks=hooks))
    return out


@lru_cache(maxsize=None)
def get_model(model_id: str, weights_sha256: str | None = None) -> Model:
    """The model ``model_id`` with its default weights, or with the weights of the given hash (older archives)."""
    if weights_sha256 is not None:
        model = get_model(model_id).with_weights(weights_sha256)
        if model is None:
            entry = model_entry(model_id)
            raise ModelError(
                f"model {model_id!r} of {entry.distribution} {entry.version} does not have weights with sha256 "
                f"{weights_sha256[:16]}…: install the plugin version that wrote the archive"
            )
        return model
    entries = model_entries()
    if model_id not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise ModelError(
            f"no installed plugin provides model {model_id!r} (installed: {known}); install the plugin that "
            "provides it (see `bbarc models`)"
        )
    model = entries[model_id].factory()
    if not isinstance(model, Model):
        raise ModelError(f"plugin {entries[model_id].plugin} returned {type(model).__name__}, not a bbarc Model")
    return model


def model_entry(model_id: str) -> ModelEntry:
    get_model(model_id)  # raises the helpful error for unknown ids
    return model_entries()[model_id]
