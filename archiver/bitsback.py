"""The bits-back step as a codec (BB-ANS), and Bit-Swap built from it.

To push x: pop z ~ q(z|x) off the message (taking back bits pushed earlier), push x ~ p(x|z), push z ~ p(z).
Popping runs the reverse, and leaves the message as it was before x was pushed, bits-back included. The prior is a
codec; the likelihood and the posterior are functions from a batch (one entry per lane) to a codec, so one network
call serves every lane. The prior may itself be a bits-back step: nesting them gives the Bit-Swap order of a
hierarchy of latent layers (``bitswap``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np

from bbarc.errors import ModelError

from .ans import AnsLanes
from .codecs import Codec, Mapped, Uniform


def _take(value, rows: np.ndarray):
    """Rows ``rows`` (lanes) of a codec's symbols: an array or a tuple of them."""
    return tuple(_take(v, rows) for v in value) if isinstance(value, tuple) else value[rows]


def _widen(value, rows: np.ndarray, n: int):
    """The inverse of ``_take``: symbols of lanes ``rows`` as symbols of ``n`` lanes (the other rows meaningless)."""
    if isinstance(value, tuple):
        return tuple(_widen(v, rows, n) for v in value)
    out = np.zeros((n, *value.shape[1:]), value.dtype)
    out[rows] = value
    return out


class _Survivors:
    """The lanes of a bits-back step still being coded. Each step's codec comes from a network call on the values
    of the step before, so a lane that fails drops out of the calls after it (and keeps its status), as the
    values of a failed lane are meaningless."""

    def __init__(self, ids: np.ndarray):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.status = np.full(len(self.ids), -1, np.int64)
        self.rows: np.ndarray | None = None  # where the survivors sit among the lanes called with; None: all

    @property
    def none(self) -> bool:
        return len(self.ids) == 0

    def record(self, status: np.ndarray, *values) -> tuple:
        """Note the survivors ``status`` says failed; returns ``values`` (one entry per survivor) without them."""
        bad = status >= 0
        if not bad.any():
            return values
        keep = np.flatnonzero(~bad)
        rows = np.arange(len(self.status)) if self.rows is None else self.rows
        self.status[rows[bad]] = status[bad]
        self.rows, self.ids = rows[keep], self.ids[keep]
        return tuple(_take(v, keep) for v in values)

    def widen(self, value):
        """The survivors' symbols as symbols of every lane called with."""
        return value if self.rows is None else _widen(value, self.rows, len(self.status))


@dataclass(frozen=True)
class BitsBack:
    """The bits-back codec of data x with latent z: ``prior`` codes z; ``likelihood(z)`` codes x; ``posterior(x)``
    codes z. Symbols: x. A lane whose posterior pop finds too few bits fails with that pop's status (see
    ``bbarc.codecs.Codec``): the chain restarts it on a longer seed. The prior serves every lane: it must not
    depend on how many there are (``Uniform``, or codecs built from such)."""

    prior: Codec
    likelihood: Callable[[Any], Codec]
    posterior: Callable[[Any], Codec]

    def push_lanes(self, lanes: AnsLanes, ids: np.ndarray, symbols) -> np.ndarray:
        return self.push_first(lanes, ids, symbols, lanes, ids)

    def push_first(self, lanes: AnsLanes, ids: np.ndarray, symbols, source: AnsLanes,
                   source_ids: np.ndarray) -> np.ndarray:
        """``push_lanes``, popping z off lanes ``source_ids`` of ``source`` instead of the message: the first item
        of a chain, which has no bits below it to take back, draws z from other bits (scratch) and pays for it in
        full (``pop_first`` reverses it). A bits-back prior still takes its bits back from the message, so it needs
        the item's bits to cover its pops. ``push_lanes`` is this with the message as the source."""
        live = _Survivors(ids)
        z, status = self.posterior(symbols).pop_lanes(source, source_ids)
        z, x = live.record(status, z, symbols)
        if not live.none:
            (z,) = live.record(self.likelihood(z).push_lanes(lanes, live.ids, x), z)
        if not live.none:
            live.record(self.prior.push_lanes(lanes, live.ids, z))
        return live.status

    def pop_lanes(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[Any, np.ndarray]:
        return self._pop(lanes, ids, bits_back=True)

    def pop_first(self, lanes: AnsLanes, ids: np.ndarray) -> tuple[Any, np.ndarray]:
        """Pop what ``push_first`` pushed: z and x, pushing nothing back (z came from elsewhere)."""
        return self._pop(lanes, ids, bits_back=False)

    def _pop(self, lanes: AnsLanes, ids: np.ndarray, bits_back: bool) -> tuple[Any, np.ndarray]:
        live = _Survivors(ids)
        z, status = self.prior.pop_lanes(lanes, ids)
        (z,) = live.record(status, z)
        if live.none:
            return None, live.status
        x, status = self.likelihood(z).pop_lanes(lanes, live.ids)
        z, x = live.record(status, z, x)
        if live.none:
            return None, live.status
        if bits_back:
            (x,) = live.record(self.posterior(x).push_lanes(lanes, live.ids, z), x)
        return live.widen(x), live.status


def bitswap(model) -> BitsBack:
    """The Bit-Swap codec of one item per lane over ``model.latent_layers`` (symbols: items (lanes,
    *item_shape)): pop z1 ~ q(z1|x), push x ~ p(x|z1), pop z2 ~ q(z2|z1), push z1 ~ p(z1|z2), ..., push z_L
    uniformly (its bins have equal prior mass). Layer i's bits-back step is the prior of layer i - 1's, which
    interleaves the layers in this order.

    ``model`` gives ``latent_layers``, ``posterior(layer, below)``, ``conditional(layer, above)`` (batched, one
    item per lane) and ``to_symbols``/``from_symbols`` between items and the symbols of p(x|z1)."""
    layers = tuple(model.latent_layers)
    if not layers:
        raise ModelError(f"model {getattr(model, 'id', '?')!r} has no latent layers, so no Bit-Swap codec: a model "
                         "of another shape returns its own item_codec()")
    top = layers[-1]
    codec: Codec = Uniform(top.size, top.bits)
    for layer in range(len(layers), 1, -1):
        codec = BitsBack(codec, partial(model.conditional, layer), partial(model.posterior, layer))
    return BitsBack(codec, partial(_item_likelihood, model), partial(model.posterior, 1))


def _item_likelihood(model, z1: np.ndarray) -> Mapped:
    """p(x|z1) as a codec of items: the model's codec codes their symbols."""
    return Mapped(model.conditional(1, z1), model.to_symbols, model.from_symbols)
