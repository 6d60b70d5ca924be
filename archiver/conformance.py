"""The conformance suite a model plugin must pass. Plugin authors run it in their own tests:

    from bbarc.conformance import check_family

    def test_my_family_conforms():
        check_family(MyFamily(), sample_items)   # sample_items: (B, *item_shape), B >= 3, values the model codes

``check_family`` binds the family to the items' shape and dtype and checks the model it gets, including that the
family rebuilds it from its recorded config; ``check_model`` checks a model alone (one built from weights that no
family ships, say). Each check raises ``bbarc.errors.ConformanceError`` saying what is wrong.

What is checked, and why:

* the contract: id syntax, a 64-hex-digit weights hash, ``bind`` giving a model of that family;
* the config: ``get_config()`` survives JSON unchanged, and ``from_config`` of it rebuilds a model with the same
  config that codes the items to the same bytes, while a config naming weights the family does not ship is
  refused (archives record the config, decoding rebuilds the model from it);
* batch invariance, through the codec protocol (``push_lanes``/``pop_lanes``): the encoder codes items in
  batches, the decoder one chain at a time, so a codec built for a batch must code each lane exactly as the
  codec built for that lane's item alone. Checked for every layer's posterior and conditional, and for a
  model's own ``item_codec()`` when it replaces the default Bit-Swap codec;
* declared precisions are the ones used (they are recorded in the archive);
* a chunk round-trips through ``bbarc.chain`` and codes to the same bytes twice, in several threads at once and
  in a spawned process (the model must pickle: worker processes receive it by value).
"""
from __future__ import annotations

import json
import multiprocessing
import pickle
import re
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import lru_cache, partial

import numpy as np

from bbarc.errors import ConformanceError, ModelError

from .ans import AnsLanes
from .chain import decode_chunk, encode_chunk
from .model import ItemSpec, Model, ModelFamily

ID_PATTERN = r"[a-z0-9][a-z0-9._-]*"
SEED_WORDS = 4096  # random 32-bit words under each lane: far more bits than the pops of one item need


def check_family(family: ModelFamily, items) -> Model:
    """Run every check on ``family`` bound to the shape and dtype of the sample ``items``; returns the model."""
    if not isinstance(family, ModelFamily):
        raise ConformanceError(f"{family!r} must be a bbarc.model.ModelFamily, is {type(family).__name__}")
    if not isinstance(family.id, str) or not re.fullmatch(ID_PATTERN, family.id):
        raise ConformanceError(f"family id {family.id!r} must be lower-case letters, digits, '.', '_' or '-'")
    if not isinstance(family.description, str) or not family.description:
        _fail(family.id, "description must be a non-empty string (`bbarc models` shows it)")
    items = _sample(family.id, items)
    model = family.bind(ItemSpec(items.shape[1:], items.dtype))
    if not isinstance(model, Model):
        _fail(family.id, f"bind() must return a bbarc.model.Model, returned {type(model).__name__}")
    if model.family != family.id:
        _fail(family.id, f"bind() returned a model of family {model.family!r}")
    check_model(model, items, family)
    return model


def check_model(model: Model, items, family: ModelFamily | None = None) -> None:
    """Run every check on ``model`` with sample ``items``; the config round trip too when ``family`` is given."""
    if not isinstance(model, Model):
        raise ConformanceError(f"{model!r} must be a bbarc.model.Model, is {type(model).__name__}")
    items = _sample(model.id, items)
    check_contract(model, items)
    check_precisions(model, items)
    check_batch_invariance(model, items)  # before coding a chunk: a batch-dependent model fails it obscurely
    payload = check_round_trip(model, items)
    if family is not None:
        check_config_round_trip(family, model, items, payload)
    check_determinism(model, items, payload)


def _fail(model_id: str, message: str):
    raise ConformanceError(f"model {model_id!r}: {message}")


def _sample(model_id: str, items) -> np.ndarray:
    items = np.asarray(items)
    if items.ndim < 1 or len(items) < 3:
        _fail(model_id, "give the conformance suite at least 3 sample items (an array of shape (B, *item_shape))")
    return items


def check_contract(model: Model, items: np.ndarray) -> None:
    if not re.fullmatch(ID_PATTERN, model.id or ""):
        _fail(model.id, "the family id must be lower-case letters, digits, '.', '_' or '-'")
    digest = model.weights_sha256()
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        _fail(model.id, f"weights_sha256() must return 64 lower-case hex digits, returned {digest!r}")
    if ItemSpec(items.shape[1:], items.dtype) != model.spec:
        _fail(model.id, f"the sample items are {items.dtype} of shape {items.shape[1:]}, the model codes "
                        f"{np.dtype(model.item_dtype)} of shape {model.item_shape}")
    model.check_items(items)  # raises UsageError (the sample is wrong) rather than ConformanceError
    for layer in model.latent_layers:
        if not 1 <= layer.bits <= 16 or layer.size < 1:
            _fail(model.id, f"latent layer {layer} must have 1..16 bits and at least one value")
    default_codec = type(model).item_codec is Model.item_codec
    if default_codec and not model.latent_layers:
        _fail(model.id, "a model without latent layers must return its own item_codec(), or None when it is "
                        "model-free")
    config = model.get_config()
    if not isinstance(config, dict):
        _fail(model.id, f"get_config() must return a dict, returned {type(config).__name__}")
    try:
        text = json.dumps(config, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        _fail(model.id, f"get_config() is not JSON ({exc}); archives record it as JSON")
    if json.loads(text) != config:
        _fail(model.id, "get_config() changes in a JSON round trip (tuples or non-string keys?); use lists and "
                        "string keys, as the archive gives them back")
    if config.get("id") != model.id or config.get("weights_sha256") != digest:
        _fail(model.id, "get_config() must hold the model's id and weights_sha256 (extend Model.get_config())")


def check_config_round_trip(family: ModelFamily, model: Model, items: np.ndarray, payload: bytes) -> None:
    """``from_config`` of the recorded config gives a model with that config and the same bytes; a config naming
    weights the family does not ship is refused (or rebuilt differently, which the registry refuses)."""
    config = json.loads(json.dumps(model.get_config()))  # as an archive gives it back
    rebuilt = family.from_config(config)
    if not isinstance(rebuilt, Model) or rebuilt.get_config() != config:
        _fail(model.id, "from_config(get_config()) must rebuild a model with exactly that config")
    if encode_chunk(rebuilt, items) != payload:
        _fail(model.id, "the model rebuilt by from_config(get_config()) codes the items to different bytes")
    unknown = dict(config, weights_sha256="0" * 64)
    try:
        other = family.from_config(unknown)
    except ModelError:
        return
    except Exception as exc:
        _fail(model.id, f"from_config with unknown weights must raise bbarc.errors.ModelError, raised "
                        f"{type(exc).__name__}: {exc}")
    if isinstance(other, Model) and other.get_config() == unknown:
        _fail(model.id, "from_config accepted a config naming weights it does not have: raise ModelError "
                        "(bbarc.model.missing_weights)")


def check_round_trip(model: Model, items: np.ndarray) -> bytes:
    payload = encode_chunk(model, items)
    decoded, _ = decode_chunk(model, payload, len(items), items.shape[1:], items.dtype)
    if decoded.dtype != items.dtype or not np.array_equal(decoded, items):
        _fail(model.id, "a chunk did not decode to the items it was encoded from")
    if encode_chunk(model, items) != payload:
        _fail(model.id, "encoding the same items twice gave different bytes (hidden randomness or state?)")
    return payload


def encode_payload(model: Model, items: np.ndarray) -> bytes:
    """``encode_chunk`` as a module-level function, so that a pool can run it."""
    return encode_chunk(model, items)


def _encode_raw(model: Model, raw: bytes, dtype: str, shape: tuple[int, ...]) -> bytes:
    # items travel as bytes: numpy's pickle turns non-native byte order into native
    return encode_chunk(model, np.frombuffer(raw, np.dtype(dtype)).reshape(shape))


def check_determinism(model: Model, items: np.ndarray, payload: bytes) -> None:
    """The same bytes from several threads coding at once and from a spawned process."""
    with ThreadPoolExecutor(4) as pool:
        if any(p != payload for p in pool.map(encode_payload, [model] * 4, [items] * 4)):
            _fail(model.id, "threads coding at the same time gave different bytes (shared mutable state?)")
    try:
        blob = pickle.dumps(model)
    except Exception as exc:
        _fail(model.id, f"the model must pickle (worker processes receive it by value): {exc}")
    if pickle.loads(blob).get_config() != model.get_config():
        _fail(model.id, "the model changes its config in a pickle round trip")
    pool = _spawned()
    try:
        other = pool.submit(_encode_raw, model, items.tobytes(), items.dtype.str, items.shape).result()
    except Exception as exc:
        pool.shutdown(wait=False, cancel_futures=True)
        _spawned.cache_clear()  # a broken pool is not reused
        _fail(model.id, f"a spawned process could not code with the pickled model: {type(exc).__name__}: {exc}")
    if other != payload:
        _fail(model.id, "a spawned process coded the items to different bytes (hash randomisation, "
                        "unseeded randomness or state that does not pickle?)")


@lru_cache(maxsize=1)
def _spawned() -> ProcessPoolExecutor:
    """One spawned worker (not forked: it shares nothing with this process but the pickled model), kept for
    later checks because starting one (imports, compiled kernels) takes seconds."""
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))


def check_precisions(model: Model, items: np.ndarray) -> None:
    """Each codec's ``prec`` is the declared ``obs_precision`` (p(x | z1)) or ``latent_precision`` (the rest)."""
    for layer, below, above in _layer_inputs(model, items):
        likelihood = ("obs_precision", model.obs_precision) if layer == 1 else ("latent_precision",
                                                                                model.latent_precision)
        for name, codec, (declared, want) in (
                ("posterior", model.posterior(layer, below), ("latent_precision", model.latent_precision)),
                ("conditional", model.conditional(layer, above), likelihood)):
            got = getattr(codec, "prec", None)
            if got != want:
                _fail(model.id, f"the {name} of layer {layer} codes with precision {got}, the model declares "
                                f"{declared} = {want} (the archive records the declared one)")


def _layer_inputs(model: Model, items: np.ndarray):
    """(layer, below, above) for each latent layer, with latents popped from each posterior as the chain does."""
    below = items
    for layer in range(1, len(model.latent_layers) + 1):
        z, _ = _pop(model.id, model.posterior(layer, below), _seeded(len(items)), f"posterior of layer {layer}")
        yield layer, below, z
        below = z


def check_batch_invariance(model: Model, items: np.ndarray) -> None:
    """Every codec a model builds for a batch codes each lane exactly as the codec built for its item alone."""
    below, symbols = items, model.to_symbols(items)
    for layer in range(1, len(model.latent_layers) + 1):
        q = _same_lanes(model, f"posterior of layer {layer}", partial(model.posterior, layer), below, None)
        _same_lanes(model, f"conditional of layer {layer}", partial(model.conditional, layer), q, symbols)
        below = symbols = q
    codec = model.item_codec()
    if codec is not None:
        if not callable(getattr(codec, "push_lanes", None)) or not callable(getattr(codec, "pop_lanes", None)):
            _fail(model.id, "item_codec() must return a codec with push_lanes/pop_lanes (bbarc.codecs.Codec)")
        _same_item_lanes(model, items)


def _same_lanes(model: Model, what: str, build, inputs: np.ndarray, symbols: np.ndarray | None) -> np.ndarray:
    """Pop (and, with ``symbols``, push) through the codec ``build(inputs)`` of the whole batch and through
    ``build(inputs[i:i+1])`` on lane i alone, from the same random lanes; the symbols and lanes must agree.
    Returns the symbols the batched codec popped."""
    n = len(inputs)
    batched = build(inputs)
    singles = [build(inputs[i : i + 1]) for i in range(n)]
    lanes_b, lanes_s = _seeded(n), _seeded(n)
    popped, _ = _pop(model.id, batched, lanes_b, what)
    for i, codec in enumerate(singles):
        alone, _ = _pop(model.id, codec, lanes_s, what, [i])
        if not np.array_equal(alone[0], popped[i]):
            _fail(model.id, f"the {what} pops different symbols for item {i} alone vs in a batch of {n}")
    _compare(model.id, lanes_b, lanes_s, f"popping through the {what}")
    if symbols is not None:
        lanes_b, lanes_s = _seeded(n), _seeded(n)
        _push(model.id, batched, lanes_b, symbols, what)
        for i, codec in enumerate(singles):
            _push(model.id, codec, lanes_s, symbols[i : i + 1], what, [i])
        _compare(model.id, lanes_b, lanes_s, f"pushing through the {what}")
    return popped


def _same_item_lanes(model: Model, items: np.ndarray) -> None:
    """The item codec (symbols: the items): pushing the batch onto its lanes at once vs each item onto its lane
    alone, then popping the batch back off, which must restore the items and the lanes."""
    n, codec = len(items), model.item_codec()
    lanes_b, lanes_s = _seeded(n), _seeded(n)
    _push(model.id, codec, lanes_b, items, "item codec")
    for i in range(n):
        _push(model.id, model.item_codec(), lanes_s, items[i : i + 1], "item codec", [i])
    _compare(model.id, lanes_b, lanes_s, "pushing through the item codec")
    back, _ = _pop(model.id, codec, lanes_b, "item codec")
    if not np.array_equal(np.asarray(back).reshape(items.shape), items):
        _fail(model.id, "the item codec pops different items than it pushed")
    _compare(model.id, lanes_b, _seeded(n), "pushing then popping through the item codec (the lanes must be as "
                                            "before)")


def _seeded(n: int) -> AnsLanes:
    """``n`` lanes, each a different random message (the same ones on every call)."""
    rng = np.random.default_rng(20240531)
    messages = []
    for _ in range(n):
        words = rng.integers(0, 1 << 32, SEED_WORDS, dtype=np.uint64).astype("<u4")
        words[1] |= 1  # the head's upper word: a head below 2**32 is not a valid message
        messages.append(words.tobytes())
    return AnsLanes.from_messages(messages)


def _ids(lanes: AnsLanes, ids) -> np.ndarray:
    return np.arange(len(lanes), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)


def _pop(model_id: str, codec, lanes: AnsLanes, what: str, ids=None):
    symbols, status = codec.pop_lanes(lanes, _ids(lanes, ids))
    if (np.asarray(status) >= 0).any():
        _fail(model_id, f"the {what} ran out of bits popping one item from {SEED_WORDS} random words")
    return np.asarray(symbols), status


def _push(model_id: str, codec, lanes: AnsLanes, symbols, what: str, ids=None) -> None:
    status = np.asarray(codec.push_lanes(lanes, _ids(lanes, ids), symbols))
    if (status >= 0).any():
        _fail(model_id, f"the {what} gives probability 0 to symbol {int(status[status >= 0][0])} of an item it "
                        "must code (a codec that codes data needs every symbol's frequency >= 1)")


def _compare(model_id: str, a: AnsLanes, b: AnsLanes, what: str) -> None:
    for lane in range(len(a)):
        if a.message(lane) != b.message(lane):
            _fail(model_id, f"{what} gave lane {lane} a different message for its item alone vs in a batch of "
                            f"{len(a)}")
