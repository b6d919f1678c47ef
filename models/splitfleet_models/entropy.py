"""Entropy models, kept apart from the networks and from the bit coder (rans.py), the way
CompressAI splits them. Each model turns into integer CDF tables at export time
(`tables()`), written next to the ONNX files; the TypeScript coder only reads tables.

* ``FactorizedPrior``: the learned, per-channel, non-parametric density of Ballé et al.,
  "Variational image compression with a scale hyperprior" (ICLR 2018, appendix 6.1):
  a monotone cumulative built from softplus-positive matrices and tanh gates. Additive
  uniform noise in training, rounding at test time; the rate term is -log2 of the
  probability mass of each unit interval. (Our implementation, written from the paper.)
* ``histogram_tables``: static per-channel histograms of integer symbols counted on the
  training set (for the fixed-range quantizers of AECNN).

The symbol of a latent value is round(y); channel c's table covers the integers where
its mass is not negligible and an escape (rans.py) covers the rest.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import rans

LIKELIHOOD_MIN = 1e-9


class FactorizedPrior(nn.Module):
    def __init__(self, channels: int, filters=(3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits_cdf(self, v: torch.Tensor) -> torch.Tensor:
        """v: (C, 1, N) -> logit of the cumulative at v, (C, 1, N)."""
        for i, m in enumerate(self.matrices):
            v = torch.matmul(F.softplus(m), v) + self.biases[i]
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i]) * torch.tanh(v)
        return v

    def _interval_mass(self, v: torch.Tensor) -> torch.Tensor:
        lower = self._logits_cdf(v - 0.5)
        upper = self._logits_cdf(v + 0.5)
        # evaluate on the side of the sigmoid where it is not saturated
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = y.shape
        v = y.permute(1, 0, 2, 3).reshape(c, 1, -1).float()
        with torch.autocast(y.device.type, enabled=False):  # the density needs float32
            lik = self._interval_mass(v).clamp_min(LIKELIHOOD_MIN)
        return lik.reshape(c, b, h, w).permute(1, 0, 2, 3)

    def forward(self, y: torch.Tensor):
        """Returns (y_hat, likelihoods): noisy in training, rounded in eval."""
        if self.training:
            y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_hat = torch.round(y)
        return y_hat, self.likelihood(y_hat)

    @torch.no_grad()
    def tables(self, tail_mass: float = 1e-6, max_half_range: int = 512) -> list[rans.Table]:
        """Integer CDF tables: per channel the smallest integer range holding all but
        `tail_mass` of the mass; the mass outside goes to the escape symbol."""
        grid = torch.arange(-max_half_range, max_half_range + 1, dtype=torch.float32)
        v = grid.reshape(1, 1, -1).expand(self.channels, 1, -1).contiguous()
        pmf = self._interval_mass(v)[:, 0, :].double().numpy()
        out = []
        for c in range(self.channels):
            p = pmf[c]
            cum = np.cumsum(p)
            total = cum[-1]
            lo = int(np.searchsorted(cum, tail_mass / 2))
            hi = int(np.searchsorted(cum, total - tail_mass / 2))
            hi = max(lo, min(hi, len(p) - 1))
            inside = p[lo : hi + 1]
            escape = max(1.0 - float(inside.sum()), 1e-12)
            out.append(rans.Table(int(grid[lo]), rans.pmf_to_cdf(inside.tolist(), escape)))
        return out


def bits(likelihoods: torch.Tensor) -> torch.Tensor:
    """Total information in bits of a likelihood tensor."""
    return -torch.log2(likelihoods).sum()


def histogram_tables(symbols: np.ndarray, levels: int, prior: float = 0.5) -> list[rans.Table]:
    """Per-channel tables for symbols in 0..levels-1 from counts over (N, C, H, W) data,
    with `prior` pseudo-counts so unseen symbols stay codable."""
    c = symbols.shape[1]
    out = []
    for ch in range(c):
        counts = np.bincount(symbols[:, ch].reshape(-1).astype(np.int64), minlength=levels)[:levels]
        pmf = (counts + prior).astype(np.float64)
        out.append(rans.Table(0, rans.pmf_to_cdf(pmf.tolist(), 1e-9 * pmf.sum())))
    return out


def table_bits(symbols: np.ndarray, tables: list[rans.Table]) -> float:
    """Ideal code length in bits of (N, C, H, W) integer symbols under channel tables
    (escape cost ignored); a quick training-time rate figure."""
    total = 0.0
    for ch, t in enumerate(tables):
        s = symbols[:, ch].reshape(-1).astype(np.int64) - t.offset
        n = len(t.cdf) - 2
        freq = np.diff(np.asarray(t.cdf, dtype=np.float64))
        idx = np.where((s >= 0) & (s < n), s, n)
        total += float(-np.log2(freq[idx] / rans.PROB_SCALE).sum())
    return total


def tables_json(tables: list[rans.Table]) -> dict:
    return {"probBits": rans.PROB_BITS, "tables": [t.to_json() for t in tables]}
