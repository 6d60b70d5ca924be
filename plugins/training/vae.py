"""Float (training-time) definition of the built-in MLP VAEs.

The coded model is an integer re-implementation of this network (see ``bbarc.plugins.intnet``); this module is only
used to train and to export. Latents use a logistic posterior and a standard logistic prior because the coder
evaluates every distribution through one exactly generated sigmoid table (``bbarc.fixedpoint``).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LOG_SCALE_MIN = -7.0  # matches the codec's smallest representable pixel log-scale (normalised units)
LATENT_LOG_SCALE_MIN = -6.0


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def logistic_logpdf(z: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    t = (z - mu) * torch.exp(-log_s)
    return -F.softplus(t) - F.softplus(-t) - log_s


def discretized_logistic_mixture_logp(x: torch.Tensor, params: torch.Tensor, k: int) -> torch.Tensor:
    """log P(x) per pixel; x in [-1, 1] (levels 0..255), params (B, 784, 3k): logits, means, log-scales."""
    logits, mu, log_s = params[..., :k], params[..., k : 2 * k], params[..., 2 * k :].clamp(min=LOG_SCALE_MIN)
    x = x.unsqueeze(-1)
    centered = x - mu
    inv_s = torch.exp(-log_s)
    plus_in = inv_s * (centered + 1.0 / 255)
    min_in = inv_s * (centered - 1.0 / 255)
    # Difference of sigmoids taken on the side where it does not cancel catastrophically in float32.
    delta = torch.where(
        centered > 0, torch.sigmoid(-min_in) - torch.sigmoid(-plus_in), torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    )
    mid_in = inv_s * centered
    log_pdf_mid = mid_in - log_s - 2.0 * F.softplus(mid_in) - math.log(127.5)
    log_mid = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)), log_pdf_mid)
    log_left = plus_in - F.softplus(plus_in)
    log_right = -F.softplus(min_in)
    logp = torch.where(x < -0.999, log_left, torch.where(x > 0.999, log_right, log_mid))
    return torch.logsumexp(logp + F.log_softmax(logits, dim=-1), dim=-1)


class MLPVAE(nn.Module):
    def __init__(self, kind: str, latent: int = 50, hidden: int = 512, mixtures: int = 2, pixels: int = 784):
        super().__init__()
        if kind not in ("8bit", "binary"):
            raise ValueError(f"kind must be '8bit' or 'binary', not {kind!r}")
        self.kind, self.latent, self.hidden, self.mixtures, self.pixels = kind, latent, hidden, mixtures, pixels
        out = pixels * 3 * mixtures if kind == "8bit" else pixels
        self.encoder = mlp([pixels, hidden, hidden, 2 * latent])
        self.decoder = mlp([latent, hidden, hidden, out])

    def config(self) -> dict:
        return dict(kind=self.kind, latent=self.latent, hidden=self.hidden, mixtures=self.mixtures, pixels=self.pixels)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x / 127.5 - 1.0 if self.kind == "8bit" else x * 2.0 - 1.0

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self.normalise(x))
        mu, log_s = h[:, : self.latent], h[:, self.latent :].clamp(min=LATENT_LOG_SCALE_MIN)
        return mu, log_s

    def neg_elbo_bits(self, x: torch.Tensor) -> torch.Tensor:
        """Single-sample -ELBO per image in bits (x: float (B, 784) of integer levels or 0/1)."""
        mu, log_s = self.posterior(x)
        u = torch.rand_like(mu).clamp(1e-6, 1 - 1e-6)
        z = mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u))
        kl = (logistic_logpdf(z, mu, log_s) - logistic_logpdf(z, torch.zeros_like(z), torch.zeros_like(z))).sum(-1)
        out = self.decoder(z)
        if self.kind == "8bit":
            logp = discretized_logistic_mixture_logp(
                self.normalise(x), out.view(-1, self.pixels, 3 * self.mixtures), self.mixtures
            ).sum(-1)
        else:
            logp = -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
        return (kl - logp) / math.log(2)
