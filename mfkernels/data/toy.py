"""Two-dimensional toy data generated in code, seeded: the usual first test of a flow."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def two_moons(n: int, noise: float = 0.05, generator: torch.Generator | None = None,
              dtype: torch.dtype = torch.float32) -> Tensor:
    """n points on two interleaved half circles (as scikit-learn's make_moons), plus Gaussian noise,
    standardised to roughly zero mean and unit scale. Returns (n, 2)."""
    n_upper = n // 2
    angle = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    upper = torch.stack([torch.cos(angle[:n_upper]), torch.sin(angle[:n_upper])], dim=1)
    lower = torch.stack([1 - torch.cos(angle[n_upper:]), 0.5 - torch.sin(angle[n_upper:])], dim=1)
    x = torch.cat([upper, lower]) + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    x = (x - torch.tensor([0.5, 0.25], dtype=torch.float64)) / torch.tensor([0.87, 0.5], dtype=torch.float64)
    return x[torch.randperm(n, generator=generator)].to(dtype)
