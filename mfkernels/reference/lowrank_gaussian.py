"""Twin of mfkernels.ops.lowrank_gaussian_log_prob: Woodbury and the determinant lemma written
directly in torch (autograd differentiates through the Cholesky factorisation)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def lowrank_gaussian_log_prob(x: Tensor, loc: Tensor, W: Tensor, diag: Tensor) -> Tensor:
    """log N(x; loc, W W^T + diag(diag)), x (..., D), W (D, K), diag (D,)."""
    D, K = W.shape
    diag = diag.expand(D)
    r = x - loc
    s = r / diag
    capacitance = torch.eye(K, dtype=W.dtype, device=W.device) + W.mT @ (W / diag.unsqueeze(-1))
    L = torch.linalg.cholesky(capacitance)
    w = torch.linalg.solve_triangular(L, (s @ W).unsqueeze(-1), upper=False).squeeze(-1)
    mahalanobis = (r * s).sum(-1) - w.square().sum(-1)
    logdet = 2 * torch.log(torch.diagonal(L)).sum() + torch.log(diag).sum()
    return -0.5 * (mahalanobis + logdet + D * math.log(2 * math.pi))
