"""Twin of mfkernels.ops.nif_block: the block-wise formulas in plain torch (batched einsum and
torch.linalg.solve over the P blocks), differentiated by autograd.

References:
    | Normalizing Flows Across Dimensions (Cunningham et al., 2020)
    | https://arxiv.org/abs/2006.13070
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def nif_block(x: Tensor, A: Tensor, b: Tensor, log_sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(log_px, manifold_term, z_mean, z_point) of the block-diagonal Gaussian NIF layer (paper 001)."""
    P, r, c = A.shape
    inv_var = torch.exp(-2 * log_sigma).expand(P, r)
    mu = x - b
    t = mu * inv_var
    lam = torch.einsum("prc,pr,prd->pcd", A, inv_var, A)
    u = torch.einsum("bpr,prc->bpc", t, A)
    eye = torch.eye(c, dtype=x.dtype, device=x.device)
    z_mean = torch.linalg.solve(lam + eye, u.unsqueeze(-1)).squeeze(-1)
    z_point = torch.linalg.solve(lam, u.unsqueeze(-1)).squeeze(-1)
    log_zx = 0.5 * ((mu * t).sum(-1) + 2 * log_sigma.expand(P, r).sum(-1) + r * math.log(2 * math.pi))
    log_px = (0.5 * ((u * z_mean).sum(-1) - torch.logdet(lam + eye)) - log_zx).sum(-1)
    log_zz = 0.5 * ((u * z_point).sum(-1) - torch.logdet(lam) + c * math.log(2 * math.pi))
    return log_px, (log_zz - log_zx).sum(-1), z_mean, z_point
