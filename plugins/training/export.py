"""Quantise a trained float checkpoint into the integer weights file a plugin ships.

    python -m bbarc.plugins.training.export build/train/mnist-vae.pt plugins/weights/mnist-vae-2.npz --data DIR

Weights become integers per output row and activations integers with a scale calibrated on training images. By
default: 14-bit weights and 8-bit activations rounded to nearest, which the int8 backend of ``bbarc.plugins.intnet``
computes exactly and fast (the v2 files). ``--float64``: 15-bit weights and 16-bit activations rounded down,
computed in float64 (the v1 files). The file stores, per output row of each network, the affine map that turns
accumulators into the codec's fixed-point parameters.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bbarc import fixedpoint as fp
from bbarc.plugins.intnet import ACT_MAX, INT8_IN_MAX, INT8_WEIGHT_MAX, WEIGHT_MAX, IntMLP, save_weights
from bbarc.plugins.training.data import TRAIN, add_data_argument, load_images
from bbarc.plugins.training.vae import LATENT_LOG_SCALE_MIN, LOG_SCALE_MIN, MLPVAE


@dataclass(frozen=True)
class Scheme:
    """How a network is quantised: weight and activation ranges, calibration headroom, rounding of activations."""

    weight_max: int
    act_max: float
    headroom: float
    round_activations: bool


FLOAT64 = Scheme(WEIGHT_MAX, ACT_MAX, 1.25, False)  # the v1 files
# Measured on the test set (chunk 1000): 1.35480 bits/dim against 1.35332 for FLOAT64; rounding activations down
# instead of to nearest costs 0.09 bits/dim at 8 bits, 8-bit (int8) weights 0.003.
INT8 = Scheme(INT8_WEIGHT_MAX, INT8_IN_MAX, 1.0, True)


def quantise(seq: torch.nn.Sequential, calib: np.ndarray, in_scale: float, in_mul: np.ndarray, in_add: np.ndarray,
             scheme: Scheme = FLOAT64, in_max: float = np.inf):
    """Quantise Linear/ReLU layers for integer inputs ``calib`` worth ``in_scale`` each; the float network saw
    ``in_mul * real + in_add``, which is folded into the first layer. ``in_max``: the inputs are integers in
    [0, in_max] (inf: unknown). Returns (IntMLP, real value of one output accumulator unit per row)."""
    linears = [m for m in seq if isinstance(m, torch.nn.Linear)]
    ws, bs, rescale = [], [], []
    a_real = calib.astype(np.float64) * in_scale  # real-valued inputs, to calibrate each layer's range
    scale = in_scale
    for i, lin in enumerate(linears):
        w = lin.weight.detach().double().numpy()
        b = lin.bias.detach().double().numpy()
        if i == 0:  # fold the input normalisation into the first layer
            b = b + w @ in_add
            w = w * in_mul[None, :]
        out_real = a_real @ w.T + b
        hidden = i < len(linears) - 1
        if hidden:
            out_real = np.maximum(out_real, 0)
            next_scale = max(np.percentile(out_real.max(axis=1), 99.9) * scheme.headroom, 1e-9) / scheme.act_max
            if scheme.round_activations:  # floor(x + 1/2): half an activation step, folded into the bias
                b = b + 0.5 * next_scale
        row = np.maximum(np.abs(w).max(axis=1), 1e-12) / scheme.weight_max
        acc_scale = scale * row  # real value of one accumulator unit, per row
        ws.append(np.round(w / row[:, None]))
        bs.append(np.round(b / acc_scale))
        if hidden:
            rescale.append(acc_scale / next_scale)
            scale = next_scale
        a_real = out_real
    acts = (scheme.act_max,) * (len(linears) - 1)
    return IntMLP(tuple(ws), tuple(bs), tuple(rescale), acts, in_max), acc_scale


def export_arguments(doc: str, calibration: int, schemes: bool = False) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    add_data_argument(ap)
    ap.add_argument("--calibration", type=int, default=calibration, help="training images used to calibrate ranges")
    if schemes:
        ap.add_argument("--float64", action="store_true",
                        help="15-bit weights and 16-bit activations for the float64 backend (the v1 weight files)")
    return ap.parse_args()


def main() -> None:
    args = export_arguments(__doc__, calibration=5000, schemes=True)
    ckpt = torch.load(args.checkpoint, map_location="cpu")
    cfg = ckpt["config"]
    model = MLPVAE(**cfg)
    model.load_state_dict(ckpt["state_dict"])
    train = load_images(args.data, TRAIN)[: args.calibration].astype(np.float64)
    binary = cfg["kind"] == "binary"
    if binary:
        train = (np.random.RandomState(1).random_sample(train.shape) < train / 255.0).astype(np.float64)
        in_mul, in_add = np.full(784, 2.0), np.full(784, -1.0)
    else:
        in_mul, in_add = np.full(784, 1 / 127.5), np.full(784, -1.0)
    scheme = FLOAT64 if args.float64 else INT8
    enc, enc_scale = quantise(model.encoder, train, 1.0, in_mul, in_add, scheme, in_max=1.0 if binary else 255.0)

    latent = cfg["latent"]
    with torch.no_grad():
        mu, log_s = model.posterior(torch.from_numpy(train).float())
        z = (mu + torch.exp(log_s) * torch.from_numpy(np.random.RandomState(2).logistic(size=mu.shape)).float()).numpy()
    one = float(1 << fp.POS_BITS)
    dec, dec_scale = quantise(model.decoder, z * one, 1.0 / one, np.ones(latent), np.zeros(latent), scheme)

    # Accumulator -> codec integers: posterior means in 2**-16 units, log-scales in 1/32 nat.
    enc_mul = enc_scale * np.concatenate([np.full(latent, one), np.full(latent, fp.LOG_SCALE_STEP)])
    extra = {"enc.out_mul": enc_mul, "enc.out_add": np.zeros(2 * latent)}
    if binary:
        extra.update({"dec.out_mul": dec_scale * one, "dec.out_add": np.zeros(784)})
    else:
        k = cfg["mixtures"]
        kinds = np.tile(np.repeat(np.arange(3), k), 784)  # rows: per pixel, k logits, k means, k log-scales
        mul = np.choose(kinds, [fp.WEIGHT_LOGIT_STEP, 127.5 * one, fp.LOG_SCALE_STEP]) * dec_scale
        add = np.choose(kinds, [0.0, 127.5 * one, fp.LOG_SCALE_STEP * math.log(127.5)])
        extra.update({"dec.out_mul": mul.astype(np.float64), "dec.out_add": add.astype(np.float64)})
    config = dict(cfg, test_bpd_float=ckpt["test_bpd"], epoch=ckpt["epoch"],
                  log_scale_min=LOG_SCALE_MIN, latent_log_scale_min=LATENT_LOG_SCALE_MIN)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(args.out, {"enc": enc, "dec": dec}, extra, config)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
