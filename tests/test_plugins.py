"""Plugin discovery, the conformance suite on every built-in model, and a third-party plugin."""
import types

import numpy as np
import pluggy
import pytest

from bbarc import hookspecs, registry
from bbarc.codecs import Categorical
from bbarc.conformance import ConformanceError, check_model
from bbarc.hookspecs import hookimpl
from bbarc.model import LatentLayer, Model


def test_builtins_come_from_entry_points():
    pm = registry.plugin_manager()
    names = {pm.get_name(p): d.project_name for p, d in pm.list_plugin_distinfo()}
    assert names.get("mnist_vae") == "bbarc" and names.get("zstd") == "bbarc"


@pytest.mark.parametrize("model_id", ["mnist-vae", "mnist-vae-binary", "mnist-hvae", "zstd"])
def test_builtin_models_pass_the_conformance_suite(model_id, mnist, mnist_binary):
    check_model(registry.get_model(model_id), (mnist_binary if model_id.endswith("binary") else mnist)[:5])


class TinyModel(Model):
    """A third-party style model: 4-pixel binary items, 2 latent bits, frequency tables built by hand."""

    id = "tiny"
    item_shape = (4,)
    item_dtype = "uint8"
    latent_layers = (LatentLayer((1,), 2),)

    def __init__(self, leak_batch: bool = False):
        self.leak_batch = leak_batch

    def weights_sha256(self):
        return "ab" * 32

    def _table(self, n_rows, p1):
        cdf = np.zeros((n_rows, 3), np.int64)
        cdf[:, 1] = 4096 - p1
        cdf[:, 2] = 4096
        return Categorical(cdf, 12)

    def posterior(self, layer, below):
        ones = below.reshape(len(below), -1).astype(np.int64).sum(1)
        cdf = np.tile(np.array([0, 1000, 2000, 3000, 4096]), (len(below), 1))
        cdf[:, 1] += ones * 100 + (len(below) if self.leak_batch else 0)
        return Categorical(cdf, 12)

    def conditional(self, layer, above):
        p1 = np.repeat(500 + 1000 * above.reshape(-1), 4)
        return self._table(len(p1), p1)


def test_a_third_party_plugin_registers_through_the_hook_and_conforms():
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    module = types.ModuleType("tiny_plugin")
    module.register_models = hookimpl(lambda register: register("tiny", TinyModel))
    pm.register(module)
    entries = registry.model_entries(pm)
    assert list(entries) == ["tiny"] and entries["tiny"].plugin == "tiny_plugin"
    items = np.random.default_rng(0).integers(0, 2, (20, 4)).astype(np.uint8)
    check_model(entries["tiny"].factory(), items)


def test_the_conformance_suite_catches_batch_dependent_models():
    items = np.random.default_rng(0).integers(0, 2, (5, 4)).astype(np.uint8)
    with pytest.raises(ConformanceError, match="alone vs in a batch"):
        check_model(TinyModel(leak_batch=True), items)


def test_duplicate_model_ids_are_refused():
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in ("one", "two"):
        module = types.ModuleType(name)
        module.register_models = hookimpl(lambda register: register("tiny", TinyModel))
        pm.register(module)
    with pytest.raises(Exception, match="registered twice"):
        registry.model_entries(pm)
