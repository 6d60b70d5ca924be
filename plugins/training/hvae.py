"""Float (training-time) definition of ``mnist-hvae``: a two-layer Markov hierarchy of convolutional latents.

q(z1|x), q(z2|z1), p(z2) standard logistic, p(z1|z2) logistic, p(x|z1) a 5-component discretised logistic
mixture. Only operations with an exact integer counterpart are used (convolutions, ReLU, residual additions,
pixel shuffle), so ``bbarc.plugins.intconv`` can run the trained network bit-exactly.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from bbarc.plugins.training.vae import LATENT_LOG_SCALE_MIN, discretized_logistic_mixture_logp, logistic_logpdf


class ResBlock(nn.Module):
    """x + conv(relu(conv(relu(x))))."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class Net(nn.Sequential):
    """conv in -> ResBlocks -> relu -> [pixel shuffle up] -> conv out. ``down``: stride-2 input conv."""

    def __init__(self, c_in: int, c_out: int, width: int, blocks: int, down: bool = False, up: bool = False):
        layers: list[nn.Module] = [nn.Conv2d(c_in, width, 3, stride=2 if down else 1, padding=1)]
        layers += [ResBlock(width) for _ in range(blocks)]
        layers.append(nn.ReLU())
        if up:
            layers += [nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2), nn.ReLU()]
        layers.append(nn.Conv2d(width, c_out, 3, padding=1))
        super().__init__(*layers)


def split_logistic(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = h.shape[1] // 2
    return h[:, :c], h[:, c:].clamp(min=LATENT_LOG_SCALE_MIN)


def sample(mu: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    u = torch.rand_like(mu).clamp(1e-6, 1 - 1e-6)
    return mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u))


class HVAE(nn.Module):
    def __init__(self, width: int = 48, blocks: int = 2, z1: int = 2, z2: int = 4, mixtures: int = 5):
        super().__init__()
        self.width, self.blocks, self.z1, self.z2, self.mixtures = width, blocks, z1, z2, mixtures
        self.q1 = Net(1, 2 * z1, width, blocks, down=True)  # x 28x28 -> z1 14x14
        self.q2 = Net(z1, 2 * z2, width, blocks, down=True)  # z1 14x14 -> z2 7x7
        self.p1 = Net(z2, 2 * z1, width, blocks, up=True)  # z2 7x7 -> z1 14x14
        self.px = Net(z1, 3 * mixtures, width, blocks, up=True)  # z1 14x14 -> x 28x28

    def config(self) -> dict:
        return dict(width=self.width, blocks=self.blocks, z1=self.z1, z2=self.z2, mixtures=self.mixtures)

    def neg_elbo_bits(self, x: torch.Tensor, free_bits: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (loss per image in bits with free bits, true -ELBO per image in bits); x (B, 1, 28, 28) levels."""
        xn = x / 127.5 - 1.0
        mu1, ls1 = split_logistic(self.q1(xn))
        z1 = sample(mu1, ls1)
        mu2, ls2 = split_logistic(self.q2(z1))
        z2 = sample(mu2, ls2)
        pm1, pls1 = split_logistic(self.p1(z2))
        kl1 = logistic_logpdf(z1, mu1, ls1) - logistic_logpdf(z1, pm1, pls1)
        zero = torch.zeros_like(z2)
        kl2 = logistic_logpdf(z2, mu2, ls2) - logistic_logpdf(z2, zero, zero)
        k = self.mixtures
        params = self.px(z1).permute(0, 2, 3, 1).reshape(len(x), 28 * 28, 3 * k)
        logp = discretized_logistic_mixture_logp(xn.reshape(len(x), -1), params, k).sum(-1)
        elbo_nats = kl1.flatten(1).sum(1) + kl2.flatten(1).sum(1) - logp
        if free_bits > 0:  # per latent dimension, averaged over the batch
            kl_fb = kl1.mean(0).clamp(min=free_bits).sum() + kl2.mean(0).clamp(min=free_bits).sum()
            loss = (kl_fb - logp.mean()) / math.log(2)
        else:
            loss = elbo_nats.mean() / math.log(2)
        return loss, elbo_nats / math.log(2)
