"""Finds model families: the built-ins by import (so a source checkout works), third-party plugins through the
``bbarc`` entry-point group, in one pluggy manager (built-ins register through the same hook, as llm's do).

``BBARC_LOAD_PLUGINS`` chooses the third-party plugins: unset loads every installed one, an empty string none,
and a comma-separated list of entry-point names just those (tests run isolated from what is installed).
Tests that add a plugin build their own ``Registry`` instead of changing the process-wide one.
"""
from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, entry_points, version

import pluggy

from bbarc.errors import ModelError, UsageError

from . import hookspecs
from .model import ItemSpec, Model, ModelFamily, check_spec

BUILTIN_PLUGINS = ("bbarc.plugins.mnist_vae", "bbarc.plugins.mnist_hvae", "bbarc.plugins.zstd_model")
ENV_LOAD = "BBARC_LOAD_PLUGINS"


@dataclass(frozen=True)
class FamilyEntry:
    family: ModelFamily
    plugin: str  # the registering module
    distribution: str
    version: str

    @property
    def id(self) -> str:
        return self.family.id


def _bbarc_version() -> str:
    try:
        return version("bbarc")
    except PackageNotFoundError:
        return "unknown"


class Registry:
    """One plugin manager and the families its plugins register."""

    def __init__(self, load_entry_points: bool | None = None, extra_plugins=()):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._dists: dict[str, tuple[str, str]] = {}
        for name in BUILTIN_PLUGINS:
            self.pm.register(importlib.import_module(name), name=name.rsplit(".", 1)[1])
            self._dists[name.rsplit(".", 1)[1]] = ("bbarc", _bbarc_version())
        wanted = os.environ.get(ENV_LOAD)
        if load_entry_points is None:
            load_entry_points = wanted != ""
        if load_entry_points:
            self._load_entry_points(None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()})
        for plugin in extra_plugins:
            self.pm.register(plugin)
            self._dists[self.pm.get_name(plugin)] = ("(not installed)", "")
        self._entries: dict[str, FamilyEntry] | None = None
        self._bound: dict[tuple[str, ItemSpec], Model] = {}

    def _load_entry_points(self, names: set[str] | None) -> None:
        for ep in entry_points(group=hookspecs.PROJECT):
            if (names is not None and ep.name not in names) or self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not take bbarc down
                raise ModelError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}; uninstall or fix it, or "
                                 f"set {ENV_LOAD} to the plugins you want") from None
            if self.pm.is_registered(plugin):
                continue
            self.pm.register(plugin, name=ep.name)
            dist = ep.dist
            self._dists[ep.name] = (dist.metadata["Name"], dist.version) if dist else ("(unknown)", "")

    # -- families ------------------------------------------------------------------------------------------
    @property
    def entries(self) -> dict[str, FamilyEntry]:
        if self._entries is None:
            self._entries = self._collect()
        return self._entries

    def _collect(self) -> dict[str, FamilyEntry]:
        entries: dict[str, FamilyEntry] = {}
        for impl in self.pm.hook.register_models.get_hookimpls():
            name, ver = self._dists.get(impl.plugin_name, ("(not installed)", ""))

            def register(family, _impl=impl, _name=name, _version=ver):
                if not isinstance(family, ModelFamily):
                    raise ModelError(f"plugin {_impl.plugin_name} registered {type(family).__name__}, not a "
                                     "bbarc.model.ModelFamily; see README 'Writing a model plugin'")
                if family.id in entries:
                    other = entries[family.id]
                    raise ModelError(
                        f"model id {family.id!r} is registered twice: by {other.plugin} ({other.distribution}) and "
                        f"by {_impl.plugin_name} ({_name}); uninstall one of them"
                    )
                entries[family.id] = FamilyEntry(family, _impl.plugin_name, _name, _version)

            impl.function(register=register)
        return entries

    def entry(self, model_id: str) -> FamilyEntry:
        if model_id not in self.entries:
            known = ", ".join(sorted(self.entries)) or "none"
            raise ModelError(f"no installed plugin provides model {model_id!r} (installed: {known}); install the "
                             "plugin that provides it (see `bbarc models`)")
        return self.entries[model_id]

    def bind(self, model_id: str, spec: ItemSpec) -> Model:
        """The model of family ``model_id`` for items of ``spec`` (UsageError if the family cannot code them).
        Models are values, so one per (id, spec) is kept: its weights are read and its networks built once."""
        key = (model_id, spec)
        if key not in self._bound:
            self._bound[key] = _checked(self.entry(model_id).family.bind(spec), model_id, "bind")
        return self._bound[key]

    def from_config(self, config: dict) -> Model:
        """Rebuild the model an archive recorded; ModelError unless the rebuilt model has exactly that config."""
        if not isinstance(config, dict) or not isinstance(config.get("id"), str):
            raise ModelError("the archive's model record has no model id")
        entry = self.entry(config["id"])
        model = _checked(entry.family.from_config(config), config["id"], "from_config")
        rebuilt = model.get_config()
        if rebuilt != config:
            diff = sorted(k for k in set(config) | set(rebuilt) if config.get(k) != rebuilt.get(k))
            raise ModelError(f"model {config['id']!r} of {entry.distribution} {entry.version} cannot rebuild the "
                             f"recorded model (it differs in {', '.join(diff)}); install the plugin version that "
                             "wrote the archive")
        return model

    def list_plugins(self) -> list[dict]:
        out = []
        for name, plugin in self.pm.list_name_plugin():
            dist, ver = self._dists.get(name, ("(not installed)", ""))
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            out.append(dict(name=name, distribution=dist, version=ver, hooks=hooks))
        return out


def _checked(model, model_id: str, what: str) -> Model:
    if not isinstance(model, Model):
        raise ModelError(f"family {model_id!r}.{what} returned {type(model).__name__}, not a bbarc.model.Model")
    if model.family != model_id:
        raise ModelError(f"family {model_id!r}.{what} returned a model of family {model.family!r}")
    return model


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    return Registry()


def resolve(model, spec: ItemSpec, registry: Registry | None = None) -> Model:
    """``model`` as ``compress`` takes it (an id or a bound ``Model``) -> the model that codes items of ``spec``."""
    if isinstance(model, Model):
        check_spec(model.family, spec, model.spec)
        return model
    if isinstance(model, str):
        return (registry or default_registry()).bind(model, spec)
    raise UsageError(f"model must be a model id or a bbarc Model, got {type(model).__name__}")


@lru_cache(maxsize=64)
def _from_config_cached(config_json: str) -> Model:
    return default_registry().from_config(json.loads(config_json))


def model_from_config(config: dict) -> Model:
    """The (cached) model for a recorded config, from the process-wide registry."""
    return _from_config_cached(json.dumps(config, sort_keys=True))
