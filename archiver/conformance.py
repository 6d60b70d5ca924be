"""Conformance checks a model plugin must pass. Plugin authors run them against their own model:

    from bbarc.conformance import check_model
    def test_my_model_conforms():
        check_model(MyModel(), sample_items)   # sample_items: (B, *item_shape), B >= 3

Each check raises ``ConformanceError`` saying what is wrong. The most important one is exactness: the integers a
model returns for an item must not depend on the batch it comes in (the encoder batches, the decoder does not).
"""
from __future__ import annotations

import re

import numpy as np

from .chain import decode_chunk, encode_chunk
from .codecs import Categorical, LogisticMixture
from .model import Model


class ConformanceError(Exception):
    pass


def _fail(model: Model, message: str):
    raise ConformanceError(f"model {getattr(model, 'id', '?')!r}: {message}")


def check_contract(model: Model) -> None:
    if not isinstance(model, Model):
        _fail(model, f"must subclass bbarc.model.Model, is {type(model).__name__}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", model.id or ""):
        _fail(model, "id must be lower-case letters, digits, '.', '_' or '-'")
    if not re.fullmatch(r"[0-9a-f]{64}", model.weights_sha256()):
        _fail(model, "weights_sha256() must return 64 lower-case hex digits")
    same = model.with_weights(model.weights_sha256())
    if same is None or same.weights_sha256() != model.weights_sha256():
        _fail(model, "with_weights(its own weights_sha256()) must return a model with those weights")
    if model.with_weights("0" * 64) is not None:
        _fail(model, "with_weights(an unknown hash) must return None")
    if not model.header_only and not model.latent_layers:
        _fail(model, "a model without latent layers must set header_only = True")
    for layer in model.latent_layers:
        if not 1 <= layer.bits <= 16 or layer.size < 1:
            _fail(model, f"latent layer {layer} must have 1..16 bits and at least one value")
    if not model.header_only and not (model.item_shape and model.item_dtype):
        _fail(model, "a latent model must declare item_shape and item_dtype")


def _codec_arrays(codec) -> tuple[np.ndarray, ...]:
    if isinstance(codec, LogisticMixture):
        return codec.mean, codec.log_scale, codec.weights
    if isinstance(codec, Categorical):
        return (codec.cdf,)
    raise ConformanceError(f"models must return LogisticMixture or Categorical codecs, got {type(codec).__name__}")


def _rows_equal(batched, single, rows: slice) -> bool:
    return all(np.array_equal(b[rows], s) for b, s in zip(_codec_arrays(batched), _codec_arrays(single)))


def check_batch_invariance(model: Model, items: np.ndarray) -> None:
    """Every layer's posterior and conditional give the same integers in a batch and one item at a time."""
    below = items
    for layer in range(1, len(model.latent_layers) + 1):
        q = model.posterior(layer, below)
        size = model.latent_layers[layer - 1].size
        z = np.stack([np.arange(size) * 7919 % (1 << model.latent_layers[layer - 1].bits)] * len(items))
        z = (z + np.arange(len(items))[:, None] * 31) % (1 << model.latent_layers[layer - 1].bits)
        p = model.conditional(layer, z)
        below_size = len(_codec_arrays(p)[0]) // len(items)
        for i in range(len(items)):
            if not _rows_equal(q, model.posterior(layer, below[i : i + 1]), slice(i * size, (i + 1) * size)):
                _fail(model, f"posterior of layer {layer} differs for item {i} alone vs in a batch of {len(items)}")
            if not _rows_equal(p, model.conditional(layer, z[i : i + 1]), slice(i * below_size, (i + 1) * below_size)):
                _fail(model, f"conditional of layer {layer} differs for item {i} alone vs in a batch")
        below = z


def check_round_trip(model: Model, items: np.ndarray) -> None:
    payload = encode_chunk(model, items)
    decoded, _ = decode_chunk(model, payload, len(items), items.shape[1:], items.dtype)
    if not np.array_equal(decoded, items) or decoded.dtype != items.dtype:
        _fail(model, "a chunk did not decode to the items it was encoded from")
    again = encode_chunk(model, items)
    if again != payload:
        _fail(model, "encoding the same items twice gave different bytes (hidden randomness or state?)")


def check_model(model: Model, items: np.ndarray) -> None:
    """Run every conformance check on ``model`` with sample ``items`` (at least 3)."""
    check_contract(model)
    items = np.asarray(items)
    if len(items) < 3:
        raise ConformanceError("give at least 3 sample items")
    model.check_items(items)
    if not model.header_only:
        check_batch_invariance(model, items)
    check_round_trip(model, items)
