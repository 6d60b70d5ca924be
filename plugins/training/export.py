"""Quantise a trained float checkpoint into the integer weights file a plugin ships.

    python -m plugins.training.export build/train/mnist-vae.pt plugins/weights/mnist-vae.npz

Weights become integers per output row and activations integers with a scale calibrated on training images:
by default bounded so that every layer but the decoder's first is exact in float32 (``--act-bits`` activation bits;
twice as fast), with ``--float64`` 15-bit weights and 16-bit activations, exact in float64 (the v1 files). See
``plugins.intnet`` for why this makes inference exact. The file stores, per output row of each
network, the affine map that turns accumulators into the codec's fixed-point parameters.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from archiver import fixedpoint as fp
from plugins.intnet import ACT_MAX, F32_EXACT, WEIGHT_MAX, IntMLP, save_weights
from plugins.training.train_vae import DEFAULT_DATA, load_idx_images
from plugins.training.vae import LATENT_LOG_SCALE_MIN, LOG_SCALE_MIN, MLPVAE


def _rows_within(w: np.ndarray, b: np.ndarray, scale: float, in_max: float, limit: float) -> tuple[np.ndarray, ...]:
    """Per-row steps for integer weights ``q = round(w / step)`` (|q| <= WEIGHT_MAX) and bias ``round(b / (scale *
    step))`` such that ``sum|q| * in_max + |bias| < limit``: the bound that makes a layer exact in float32."""
    step = np.maximum(np.abs(w).max(axis=1), 1e-12) / WEIGHT_MAX
    step = np.maximum(step, (np.abs(w).sum(axis=1) * in_max + np.abs(b) / scale) / (0.995 * limit))
    while True:
        q, qb = np.round(w / step[:, None]), np.round(b / (scale * step))
        over = np.abs(q).sum(axis=1) * in_max + np.abs(qb) >= limit
        if not over.any():
            return q, qb, step
        step[over] *= 1.001


def quantise(seq: torch.nn.Sequential, calib: np.ndarray, in_scale: float, in_mul: np.ndarray, in_add: np.ndarray,
             in_max: float | None = None, act_max: float = ACT_MAX, headroom: float = 1.25):
    """Quantise Linear/ReLU layers for integer inputs ``calib`` worth ``in_scale`` each; the float network saw
    ``in_mul * real + in_add``, which is folded into the first layer. With ``in_max`` (the largest integer input;
    ``inf`` keeps the first layer in float64), the layers are quantised to be exact in float32 (``plugins.intnet``),
    with hidden activations clipped at ``act_max``. Returns (IntMLP, real value of one output accumulator unit per row)."""
    linears = [m for m in seq if isinstance(m, torch.nn.Linear)]
    ws, bs, rescale = [], [], []
    a_real = calib.astype(np.float64) * in_scale  # real-valued inputs, to calibrate each layer's range
    scale, bound = in_scale, (in_max if in_max is not None and np.isfinite(in_max) else None)
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
            next_scale = max(np.percentile(out_real.max(axis=1), 99.9) * headroom, 1e-9) / act_max
            if bound is not None:  # round activations to nearest instead of down: half a step, in the bias
                b = b + 0.5 * next_scale
        if bound is None:
            row = np.maximum(np.abs(w).max(axis=1), 1e-12) / WEIGHT_MAX
            q, qb = np.round(w / row[:, None]), np.round(b / (scale * row))
        else:
            q, qb, row = _rows_within(w, b, scale, bound, F32_EXACT)
        acc_scale = scale * row  # real value of one accumulator unit, per row
        ws.append(q)
        bs.append(qb)
        if hidden:
            rescale.append(acc_scale / next_scale)
            scale, bound = next_scale, (act_max if in_max is not None else None)
        a_real = out_real
    acts = (act_max,) * (len(linears) - 1)
    return IntMLP(tuple(ws), tuple(bs), tuple(rescale), acts, np.inf if in_max is None else in_max), acc_scale


def export_arguments(doc: str, calibration: int, float32: bool = False) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--calibration", type=int, default=calibration, help="training images used to calibrate ranges")
    if float32:
        ap.add_argument("--float64", dest="float32", action="store_false",
                        help="15-bit weights and 16-bit activations, exact in float64 only (the v1 weight files)")
        ap.add_argument("--act-bits", type=int, default=9, help="hidden activation bits for float32-exact layers")
    return ap.parse_args()


def main() -> None:
    args = export_arguments(__doc__, calibration=5000, float32=True)
    ckpt = torch.load(args.checkpoint, map_location="cpu")
    cfg = ckpt["config"]
    model = MLPVAE(**cfg)
    model.load_state_dict(ckpt["state_dict"])
    train = load_idx_images(args.data / "train-images-idx3-ubyte.gz")[: args.calibration].astype(np.float64)
    binary = cfg["kind"] == "binary"
    if binary:
        train = (np.random.RandomState(1).random_sample(train.shape) < train / 255.0).astype(np.float64)
        in_mul, in_add = np.full(784, 2.0), np.full(784, -1.0)
    else:
        in_mul, in_add = np.full(784, 1 / 127.5), np.full(784, -1.0)
    # float32: activations are few bits, so no headroom above the calibrated range (measured: 0.0001 bits/dim better)
    f32 = dict(in_max=1.0 if binary else 255.0, act_max=float((1 << args.act_bits) - 1), headroom=1.0) if args.float32 else {}
    enc, enc_scale = quantise(model.encoder, train, 1.0, in_mul, in_add, **f32)

    latent = cfg["latent"]
    with torch.no_grad():
        mu, log_s = model.posterior(torch.from_numpy(train).float())
        z = (mu + torch.exp(log_s) * torch.from_numpy(np.random.RandomState(2).logistic(size=mu.shape)).float()).numpy()
    one = float(1 << fp.POS_BITS)
    if args.float32:  # latents enter in fixed point (|z| < 2**20): float64 first layer, float32 after it
        f32["in_max"] = np.inf
    dec, dec_scale = quantise(model.decoder, z * one, 1.0 / one, np.ones(latent), np.zeros(latent), **f32)

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
