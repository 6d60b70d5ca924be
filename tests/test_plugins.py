"""The conformance suite on every built-in family, a third-party plugin registered through the hook, and the
faults the suite must catch. Plugins are added to private registries only: no test changes the process-wide one."""
import types

import numpy as np
import pytest

from bbarc.codecs import Categorical
from bbarc.conformance import check_batch_invariance, check_family, check_model
from bbarc.errors import ConformanceError, ModelError, UsageError
from bbarc.hookspecs import hookimpl
from bbarc.model import ItemSpec, LatentLayer, Model, ModelFamily, check_spec, missing_weights
from bbarc.registry import Registry

BUILTINS = ["mnist-vae", "mnist-vae-binary", "mnist-hvae", "zstd"]


@pytest.fixture(scope="module")
def builtins() -> Registry:
    return Registry(load_entry_points=False)


@pytest.mark.parametrize("model_id", BUILTINS)
def test_builtin_families_pass_the_conformance_suite(builtins, model_id, mnist, mnist_binary):
    check_family(builtins.entry(model_id).family, (mnist_binary if model_id.endswith("binary") else mnist)[:5])


def test_zstd_conforms_for_any_shape_and_dtype(builtins):
    check_family(builtins.entry("zstd").family, np.linspace(-1, 1, 5 * 3 * 2).reshape(5, 3, 2).astype(">f4"))


# -- a third-party style plugin: 4 binary pixels, one 2-bit latent, frequency tables made by hand -----------------

TINY_WEIGHTS = "ab" * 32
TINY_SPEC = ItemSpec((4,), "uint8")


def _bernoulli(p1: np.ndarray, prec: int) -> Categorical:
    """One row per pixel: P(1) = p1 / 2**prec."""
    p1 = np.asarray(p1, np.int64).reshape(-1)
    return Categorical(np.stack([np.zeros_like(p1), (1 << prec) - p1, np.full_like(p1, 1 << prec)], 1), prec)


class TinyModel(Model):
    family = "tiny"
    item_shape = TINY_SPEC.shape
    item_dtype = "uint8"
    latent_layers = (LatentLayer((1,), 2),)
    obs_precision = 12
    latent_precision = 12
    SHIFT = 0  # a class-level setting: a process that unpickles the model sees the class's own value

    def __init__(self, leak_batch: bool = False, posterior_prec: int = 12):
        self.leak_batch, self.posterior_prec = leak_batch, posterior_prec

    def weights_sha256(self):
        return TINY_WEIGHTS

    def posterior(self, layer, below):
        ones = below.reshape(len(below), -1).astype(np.int64).sum(1)
        scale = 1 << (self.posterior_prec - 12)
        cdf = np.tile(np.array([0, 1000, 2000, 3000, 4096]) * scale, (len(below), 1))
        cdf[:, 1] += (ones * 100 + self.SHIFT + (len(below) if self.leak_batch else 0)) * scale
        return Categorical(cdf, self.posterior_prec)

    def conditional(self, layer, above):
        return _bernoulli(np.repeat(500 + 1000 * above.reshape(-1), 4), self.obs_precision)

    def check_items(self, items):
        super().check_items(items)
        if items.size and items.max() > 1:
            raise UsageError("tiny codes binary items")


class TinyFamily(ModelFamily):
    id = "tiny"
    description = "4 binary pixels, one 2-bit latent (a test plugin)"

    def bind(self, spec):
        check_spec(self.id, spec, TINY_SPEC)
        return TinyModel()

    def from_config(self, config):
        if config.get("weights_sha256") != TINY_WEIGHTS:
            raise missing_weights(self.id, config.get("weights_sha256"))
        return TinyModel()


def _plugin(name: str, *families) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def register_models(register):
        for family in families:
            register(family)

    module.register_models = register_models
    return module


@pytest.fixture(scope="module")
def tiny_items() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 2, (6, 4)).astype(np.uint8)


def test_a_third_party_plugin_registers_through_the_hook_and_conforms(tiny_items):
    registry = Registry(load_entry_points=False, extra_plugins=[_plugin("tiny_plugin", TinyFamily())])
    entry = registry.entry("tiny")
    assert entry.plugin == "tiny_plugin" and entry.family.id == "tiny"
    model = check_family(entry.family, tiny_items)
    assert registry.bind("tiny", TINY_SPEC) == model
    assert registry.from_config(model.get_config()) == model
    assert "tiny_plugin" in {p["name"] for p in registry.list_plugins()}


def test_the_suite_catches_a_batch_dependent_posterior(tiny_items):
    with pytest.raises(ConformanceError, match="posterior of layer 1 .* alone vs in a batch"):
        check_model(TinyModel(leak_batch=True), tiny_items)


def test_the_suite_catches_an_undeclared_precision(tiny_items):
    with pytest.raises(ConformanceError, match="precision 13, the model declares latent_precision = 12"):
        check_model(TinyModel(posterior_prec=13), tiny_items)


def test_the_suite_catches_state_that_does_not_reach_a_worker_process(tiny_items, monkeypatch):
    monkeypatch.setattr(TinyModel, "SHIFT", 300)  # set in this process only, as a global configured at run time
    with pytest.raises(ConformanceError, match="spawned process coded the items to different bytes"):
        check_model(TinyModel(), tiny_items)


class ForgetfulFamily(TinyFamily):
    """Rebuilds any config, whatever weights it names: archives written with other weights would decode wrong."""

    def from_config(self, config):
        model = TinyModel()
        model.weights_sha256 = lambda: config["weights_sha256"]
        return model


def test_the_suite_catches_from_config_accepting_unknown_weights(tiny_items):
    with pytest.raises(ConformanceError, match="accepted a config naming weights it does not have"):
        check_family(ForgetfulFamily(), tiny_items)


class TupleConfigModel(TinyModel):
    def get_config(self):
        return dict(super().get_config(), extra=(1, 2))


def test_the_suite_catches_a_config_that_changes_in_json(tiny_items):
    with pytest.raises(ConformanceError, match="changes in a JSON round trip"):
        check_model(TupleConfigModel(), tiny_items)


# -- a model that brings its own item codec (no latents): batch invariance through the codec protocol ------------

class PixelCodec:
    """Codes each lane's 4 binary pixels with fixed Bernoullis; ``leak`` makes them depend on the lane count."""

    prec = 12

    def __init__(self, leak: bool):
        self.leak = leak

    def _rows(self, lanes: int) -> Categorical:
        return _bernoulli(np.full(4 * lanes, 1000 + (7 * lanes if self.leak else 0)), self.prec)

    def push_lanes(self, lanes, ids, symbols):
        return self._rows(len(ids)).push_lanes(lanes, ids, np.asarray(symbols, np.int64).reshape(len(ids), 4))

    def pop_lanes(self, lanes, ids):
        symbols, status = self._rows(len(ids)).pop_lanes(lanes, ids)
        return symbols.astype(np.uint8), status


class PixelModel(TinyModel):
    latent_layers = ()

    def __init__(self, leak: bool = False):
        super().__init__()
        self.leak = leak

    def item_codec(self):
        return PixelCodec(self.leak)


def test_a_custom_item_codec_is_checked_through_the_codec_protocol(tiny_items):
    check_model(PixelModel(), tiny_items)  # the chain codes with it too
    with pytest.raises(ConformanceError, match="item codec gave lane 0 a different message .* alone vs in a batch"):
        check_batch_invariance(PixelModel(leak=True), tiny_items)


def test_a_model_without_latents_needs_its_own_codec(tiny_items):
    class Bare(TinyModel):
        latent_layers = ()

    with pytest.raises(ConformanceError, match="without latent layers must return its own item_codec"):
        check_model(Bare(), tiny_items)


def test_duplicate_model_ids_are_refused():
    registry = Registry(load_entry_points=False,
                        extra_plugins=[_plugin("one", TinyFamily()), _plugin("two", TinyFamily())])
    with pytest.raises(ModelError, match="registered twice"):
        registry.entries


def test_an_id_taken_by_a_builtin_is_refused():
    class Impostor(TinyFamily):
        id = "zstd"

    with pytest.raises(ModelError, match="'zstd' is registered twice"):
        Registry(load_entry_points=False, extra_plugins=[_plugin("impostor", Impostor())]).entries
