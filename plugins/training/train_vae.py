"""Train a built-in MLP VAE on MNIST (2 CPU cores are enough; a GPU is used when present).

    python -m bbarc.plugins.training.train_vae --kind 8bit --data DIR --out build/train/mnist-vae.pt
    python -m bbarc.plugins.training.train_vae --kind binary --data DIR --out build/train/mnist-vae-binary.pt

``DIR`` holds MNIST's IDX files (or set ``$BBARC_DATA`` instead of ``--data``).

Writes a float checkpoint after every epoch (best test -ELBO kept); ``bbarc.plugins.training.export`` turns it into the
integer weights file shipped with the plugin.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from bbarc.plugins.training.data import TEST, TRAIN, add_data_argument, load_images
from bbarc.plugins.training.vae import MLPVAE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=["8bit", "binary"], required=True)
    ap.add_argument("--out", type=Path, required=True)
    add_data_argument(ap)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--minutes", type=float, default=60.0, help="stop after this much wall time")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--latent", type=int, default=50)
    ap.add_argument("--mixtures", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N train/test images (smoke tests)")
    ap.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights (a new LR cycle)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train_u8 = load_images(args.data, TRAIN)[: args.limit]
    train = torch.from_numpy(train_u8.astype(np.float32)).to(device)
    test_u8 = load_images(args.data, TEST)[: args.limit]
    if args.kind == "binary":
        # The fixed evaluation binarisation used by the product's acceptance test; training binarises afresh each epoch.
        test_np = (np.random.RandomState(0).random_sample(test_u8.shape) < test_u8 / 255.0).astype(np.float32)
    else:
        test_np = test_u8.astype(np.float32)
    test = torch.from_numpy(test_np).to(device)

    model = MLPVAE(args.kind, latent=args.latent, hidden=args.hidden, mixtures=args.mixtures).to(device)
    if args.init:
        init = torch.load(args.init, map_location=device)
        if init["config"] != model.config():
            raise SystemExit(f"--init {args.init} has architecture {init['config']}, not {model.config()}")
        model.load_state_dict(init["state_dict"])
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs, eta_min=args.lr * 0.05)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start, best = time.time(), math.inf
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(train), device=device)
        total = 0.0
        for i in range(0, len(train), args.batch):
            x = train[perm[i : i + args.batch]]
            if args.kind == "binary":
                x = (torch.rand_like(x) < x / 255.0).float()
            loss = model.neg_elbo_bits(x).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
        sched.step()
        model.eval()
        with torch.no_grad():
            test_bits = sum(model.neg_elbo_bits(test[i : i + 1000]).sum().item() for i in range(0, len(test), 1000))
        test_bpd = test_bits / test.numel()
        elapsed = time.time() - start
        print(json.dumps(dict(epoch=epoch, train_bpd=round(total / train.numel(), 4), test_bpd=round(test_bpd, 4),
                              minutes=round(elapsed / 60, 2))), flush=True)
        if test_bpd < best:
            best = test_bpd
            torch.save(dict(config=model.config(), state_dict=model.state_dict(), test_bpd=test_bpd, epoch=epoch,
                            args={k: str(v) for k, v in vars(args).items()}), args.out)
        if elapsed > args.minutes * 60:
            print(json.dumps(dict(stopped="time limit", epoch=epoch)), flush=True)
            break


if __name__ == "__main__":
    main()
