"""Integer-exact convolutional networks in numpy (the ``mnist-hvae`` plugin's inference).

Same argument as ``bbarc.plugins.intnet``: integer weights |w| < 2**15, integer activations |a| <= 2**15 (latent
inputs up to 2**20), fan-in <= 1024, so each convolution, computed as one float64 matrix product over an
im2col view, yields exact integers whatever the BLAS, batch or threads. Between layers each value is rescaled
with one IEEE multiply and a floor. Residual additions and pixel shuffles are exact integer operations.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bbarc.errors import ModelError
from bbarc.plugins.weightfiles import read_weights, write_weights

ACT_MAX = float(1 << 15)
WEIGHT_MAX = (1 << 15) - 1
MAX_FAN_IN = 1 << 10


def conv2d(a: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """'same' 3x3 (or 1x1) convolution of integer-valued float64 arrays (N, C, H, W): exact accumulators."""
    o, c, kh, kw = weight.shape
    p = kh // 2
    padded = np.pad(a, ((0, 0), (0, 0), (p, p), (p, p))) if p else a
    win = sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]  # N, C, H', W', kh, kw
    n, _, h, w = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, c * kh * kw)
    out = cols @ weight.reshape(o, -1).T + bias
    return out.reshape(n, h, w, o).transpose(0, 3, 1, 2)


@dataclass(frozen=True, eq=False)
class Conv:
    """A convolution whose accumulators are rescaled per output channel (``rescale``) and clipped, optionally
    through a ReLU; ``rescale is None`` returns the raw accumulators (a network's last layer)."""

    weight: np.ndarray
    bias: np.ndarray
    stride: int
    rescale: np.ndarray | None
    relu: bool

    def __post_init__(self):
        w = self.weight
        if np.abs(w).max() > WEIGHT_MAX or (w != np.round(w)).any() or w[0].size > MAX_FAN_IN:
            raise ModelError("Conv weights must be integers below 2**15 with fan-in <= 1024 (exactness bound)")

    def accumulate(self, a: np.ndarray) -> np.ndarray:
        return conv2d(a, self.weight, self.bias, self.stride)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        acc = self.accumulate(a)
        if self.rescale is None:
            return acc
        return np.clip(np.floor(acc * self.rescale[:, None, None]), 0.0 if self.relu else -ACT_MAX, ACT_MAX)


@dataclass(frozen=True, eq=False)
class Residual:
    """x + conv2(relu(conv1(relu(x)))), conv2 rescaled to x's scale, the sum clipped."""

    conv1: Conv
    conv2: Conv

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.floor(self.conv2.accumulate(self.conv1(np.maximum(x, 0.0))) * self.conv2.rescale[:, None, None])
        return np.clip(x + y, -ACT_MAX, ACT_MAX)


@dataclass(frozen=True)
class Relu:
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)


@dataclass(frozen=True)
class Shuffle:
    """Pixel shuffle (depth to space) by ``r``, as torch.nn.PixelShuffle."""

    r: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        r = self.r
        return x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (r * r), h * r, w * r)


class IntConvNet:
    def __init__(self, ops: list):
        self.ops = ops

    def __call__(self, x: np.ndarray) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64)
        for op in self.ops:
            a = op(a)
        return a


# --- serialisation: a JSON description of the ops plus their arrays ------------------------------------------


def _describe(op, prefix: str, arrays: dict) -> dict:
    if isinstance(op, Conv):
        arrays[f"{prefix}.w"] = op.weight.astype(np.int16)
        arrays[f"{prefix}.b"] = op.bias.astype(np.int64)
        if op.rescale is not None:
            arrays[f"{prefix}.r"] = op.rescale
        return dict(op="conv", stride=op.stride, relu=op.relu, final=op.rescale is None)
    if isinstance(op, Residual):
        return dict(op="residual", conv1=_describe(op.conv1, prefix + ".1", arrays),
                    conv2=_describe(op.conv2, prefix + ".2", arrays))
    if isinstance(op, Relu):
        return dict(op="relu")
    if isinstance(op, Shuffle):
        return dict(op="shuffle", r=op.r)
    raise ModelError(f"cannot serialise {op!r}")


def _build(desc: dict, prefix: str, arrays: dict):
    kind = desc["op"]
    if kind == "conv":
        rescale = None if desc["final"] else arrays[f"{prefix}.r"]
        return Conv(arrays[f"{prefix}.w"].astype(np.float64), arrays[f"{prefix}.b"].astype(np.float64),
                    desc["stride"], rescale, desc["relu"])
    if kind == "residual":
        return Residual(_build(desc["conv1"], prefix + ".1", arrays), _build(desc["conv2"], prefix + ".2", arrays))
    if kind == "relu":
        return Relu()
    if kind == "shuffle":
        return Shuffle(desc["r"])
    raise ModelError(f"unknown op {kind!r} in weights file")


def save_nets(path: Path, nets: dict[str, IntConvNet], extra: dict[str, np.ndarray], config: dict) -> None:
    arrays: dict[str, np.ndarray] = {}
    graph = {name: [_describe(op, f"{name}.{i}", arrays) for i, op in enumerate(net.ops)] for name, net in nets.items()}
    write_weights(path, {**arrays, **extra}, dict(config=config, graph=graph))


def build_nets(meta: dict, arrays: dict[str, np.ndarray]) -> tuple[dict[str, IntConvNet], dict[str, np.ndarray]]:
    """The networks a weights file describes (``meta["graph"]``), and the arrays that are not part of them."""
    nets = {name: IntConvNet([_build(d, f"{name}.{i}", arrays) for i, d in enumerate(ops)])
            for name, ops in meta["graph"].items()}
    extra = {k: v for k, v in arrays.items() if k.split(".")[0] not in nets or k.endswith(("out_mul", "out_add"))}
    return nets, extra


def load_nets(path) -> tuple[dict, dict[str, IntConvNet], dict[str, np.ndarray], str]:
    """Returns (config, networks, other arrays, sha256 of the file)."""
    meta, arrays, digest = read_weights(path)
    return (meta["config"], *build_nets(meta, arrays), digest)
