"""Twin of mfkernels.ops.tril_gaussian_log_prob: the covariance assembled densely and factored with
autograd (non-degenerate cases; the degenerate sigma = 0 case is checked against numpy's
pseudo-inverse in the tests)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def tril_gaussian_log_prob(z: Tensor, A: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
    """log N(z; 0, tril(A) tril(A)^T + sigma^2 I) via a Cholesky factor of the dense covariance."""
    L = torch.tril(A)
    D = L.shape[-1]
    cov = L @ L.mT + torch.as_tensor(sigma, dtype=L.dtype, device=L.device).square() * torch.eye(
        D, dtype=L.dtype, device=L.device)
    C = torch.linalg.cholesky(cov)
    rows = z.reshape(-1, D)
    w = torch.linalg.solve_triangular(C, rows.mT, upper=False).mT.reshape(z.shape)  # all rows in one solve
    return -0.5 * w.square().sum(-1) - torch.log(torch.diagonal(C)).sum() - 0.5 * D * math.log(2 * math.pi)
