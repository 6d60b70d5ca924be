"""Train ``mnist-hvae`` on MNIST (a GPU is used when present; times: README "Training the built-in models").

    python -m bbarc.plugins.training.train_hvae --data DIR --out build/train/mnist-hvae.pt --minutes 60

Writes a float checkpoint after every epoch (best test -ELBO kept) and can resume from it (``--resume``);
``bbarc.plugins.training.export_hvae`` turns it into the integer weights file shipped with the plugin.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from bbarc.plugins.training.hvae import HVAE
from bbarc.plugins.training.data import TEST, TRAIN, add_data_argument, load_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    add_data_argument(ap)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--minutes", type=float, default=60.0, help="stop after this much wall time")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--free-bits", type=float, default=0.05, help="nats per latent dimension")
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N train/test images (smoke tests)")
    ap.add_argument("--resume", action="store_true", help="continue from --out if it exists")
    ap.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights (a new LR cycle)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    load = lambda name: torch.from_numpy(  # noqa: E731
        load_images(args.data, name)[: args.limit].astype(np.float32).reshape(-1, 1, 28, 28)).to(device)
    train, test = load(TRAIN), load(TEST)

    model = HVAE(width=args.width).to(device)
    opt = torch.optim.Adamax(model.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(len(train) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch,
                                                pct_start=0.05, final_div_factor=20)
    start_epoch, best = 0, math.inf
    if args.init is not None:
        init = torch.load(args.init, map_location=device)
        model.load_state_dict(init["state_dict"])
        best = init["test_bpd"]  # only keep a checkpoint that improves on the starting point
    if args.resume and args.out.exists():
        ckpt = torch.load(args.out, map_location=device)
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        start_epoch, best = ckpt["epoch"] + 1, ckpt["test_bpd"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for epoch in range(start_epoch, args.epochs):
        model.train()
        perm = torch.randperm(len(train), device=device)
        total = 0.0
        for i in range(0, len(train), args.batch):
            x = train[perm[i : i + args.batch]]
            loss, elbo = model.neg_elbo_bits(x, free_bits=args.free_bits)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 200.0)
            opt.step()
            sched.step()
            total += elbo.sum().item()
        model.eval()
        with torch.no_grad():
            test_bits = sum(model.neg_elbo_bits(test[i : i + 500])[1].sum().item() for i in range(0, len(test), 500))
        test_bpd = test_bits / test.numel()
        minutes = (time.time() - started) / 60
        print(json.dumps(dict(epoch=epoch, train_bpd=round(total / train.numel(), 4), test_bpd=round(test_bpd, 4),
                              minutes=round(minutes, 2))), flush=True)
        state = dict(config=model.config(), state_dict=model.state_dict(), opt=opt.state_dict(),
                     sched=sched.state_dict(), test_bpd=test_bpd, epoch=epoch)
        torch.save(state, args.out.with_suffix(".last.pt"))
        if test_bpd < best:
            best = test_bpd
            torch.save(state, args.out)
        if minutes > args.minutes:
            print(json.dumps(dict(stopped="time limit", epoch=epoch)), flush=True)
            break


if __name__ == "__main__":
    main()
