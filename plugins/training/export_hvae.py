"""Quantise a trained ``mnist-hvae`` checkpoint into the integer weights file the plugin ships.

    python -m bbarc.plugins.training.export_hvae build/train/mnist-hvae.pt plugins/weights/mnist-hvae.npz --data DIR

Per output channel 15-bit weights; 16-bit activations whose scales are calibrated on training images (the
largest value seen, with 25 % headroom). See ``bbarc.plugins.intconv`` for why inference is then exact.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bbarc import fixedpoint as fp
from bbarc.plugins.intconv import ACT_MAX, WEIGHT_MAX, Conv, IntConvNet, Relu, Residual, Shuffle, save_nets
from bbarc.plugins.training.export import export_arguments
from bbarc.plugins.training.hvae import HVAE, ResBlock, sample, split_logistic
from bbarc.plugins.training.data import TRAIN, load_images
from bbarc.plugins.training.vae import LATENT_LOG_SCALE_MIN, LOG_SCALE_MIN

HEADROOM = 1.25


def _scale_for(values: torch.Tensor) -> float:
    return max(values.abs().max().item() * HEADROOM, 1e-9) / ACT_MAX


def _quant_conv(conv: nn.Conv2d, in_scale: float, out_scale: float | None, relu: bool) -> tuple[Conv, np.ndarray]:
    w = conv.weight.detach().double().numpy()
    b = conv.bias.detach().double().numpy()
    row = np.maximum(np.abs(w).reshape(len(w), -1).max(axis=1), 1e-12) / WEIGHT_MAX
    acc_scale = in_scale * row
    rescale = None if out_scale is None else acc_scale / out_scale
    return Conv(np.round(w / row[:, None, None, None]), np.round(b / acc_scale), conv.stride[0], rescale, relu), acc_scale


def quantise_net(net: nn.Sequential, x: torch.Tensor, in_scale: float) -> tuple[IntConvNet, np.ndarray]:
    """Walk the float net on calibration input x (real values), building integer ops with calibrated scales."""
    mods = list(net)
    ops: list = []
    # The residual stream (first conv output and every ResBlock output) shares one scale.
    with torch.no_grad():
        h = mods[0](x)
        stream = [h]
        for m in mods[1:]:
            if not isinstance(m, ResBlock):
                break
            h = m(h)
            stream.append(h)
        s_scale = max(_scale_for(t) for t in stream)
        conv, _ = _quant_conv(mods[0], in_scale, s_scale, relu=False)
        ops.append(conv)
        h, scale = stream[0], s_scale
        i = 1
        while isinstance(mods[i], ResBlock):
            blk = mods[i]
            inner = F.relu(blk.conv1(F.relu(h)))
            h_scale = _scale_for(inner)
            c1, _ = _quant_conv(blk.conv1, scale, h_scale, relu=True)
            c2, _ = _quant_conv(blk.conv2, h_scale, scale, relu=False)
            ops.append(Residual(c1, c2))
            h = blk(h)
            i += 1
        for m in mods[i:-1]:
            if isinstance(m, nn.ReLU):
                ops.append(Relu())
                h = F.relu(h)
            elif isinstance(m, nn.PixelShuffle):
                ops.append(Shuffle(m.upscale_factor))
                h = m(h)
            elif isinstance(m, nn.Conv2d):  # the up-sampling conv, followed by shuffle and ReLU
                out = F.relu(m(h))
                out_scale = _scale_for(out)
                conv, _ = _quant_conv(m, scale, out_scale, relu=True)
                ops.append(conv)
                h, scale = m(h), out_scale
            else:
                raise TypeError(f"cannot quantise {m}")
        conv, acc_scale = _quant_conv(mods[-1], scale, None, relu=False)
        ops.append(conv)
    return IntConvNet(ops), acc_scale


def main() -> None:
    args = export_arguments(__doc__, calibration=2000)
    ckpt = torch.load(args.checkpoint, map_location="cpu")
    model = HVAE(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    x = torch.from_numpy(load_images(args.data, TRAIN)[: args.calibration]
                         .astype(np.float32).reshape(-1, 1, 28, 28))
    one = float(1 << fp.POS_BITS)
    torch.manual_seed(0)
    with torch.no_grad():
        xn = x / 127.5 - 1.0
        z1 = sample(*split_logistic(model.q1(xn)))
        z2 = sample(*split_logistic(model.q2(z1)))
    # Integer inputs: 2x - 255 for pixels (zero padding then matches the float net's), latents in 2**-16 units.
    nets, scales = {}, {}
    for name, inp, in_scale in (("q1", xn, 1 / 255), ("q2", z1, 1 / one), ("p1", z2, 1 / one), ("px", z1, 1 / one)):
        nets[name], scales[name] = quantise_net(getattr(model, name), inp, in_scale)

    def latent_affine(acc_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = len(acc_scale) // 2  # channels: means then log-scales
        return acc_scale * np.repeat([one, fp.LOG_SCALE_STEP], c), np.full(2 * c, 0.5)  # + 0.5: round to nearest

    extra = {}
    for name in ("q1", "q2", "p1"):
        extra[f"{name}.out_mul"], extra[f"{name}.out_add"] = latent_affine(scales[name])
    k = model.mixtures
    kinds = np.repeat(np.arange(3), k)  # channels: k logits, k means, k log-scales
    extra["px.out_mul"] = np.choose(kinds, [fp.WEIGHT_LOGIT_STEP, 127.5 * one, fp.LOG_SCALE_STEP]) * scales["px"]
    extra["px.out_add"] = np.choose(kinds, [0.5, 127.5 * one + 0.5, fp.LOG_SCALE_STEP * math.log(127.5) + 0.5])
    config = dict(ckpt["config"], test_bpd_float=ckpt["test_bpd"], epoch=ckpt["epoch"], log_scale_min=LOG_SCALE_MIN,
                  latent_log_scale_min=LATENT_LOG_SCALE_MIN)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_nets(args.out, nets, extra, config)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
