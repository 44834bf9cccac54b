"""Batched conjugate gradients: solves A_b x_b = r_b for a batch of small symmetric positive definite
systems given only the products v ↦ A_b v (here A = JᵀJ of a generator, applied as Jᵀ(J v) with one
forward-mode and one reverse-mode pass; the Hutchinson estimator of rectangular flows, Caterini et al.
2021, eq. 12, needs (JᵀJ)⁻¹ε).

Every row has its own step sizes; a row that has converged stops moving while the others go on, and
the loop ends when all rows meet the tolerance or at the iteration cap. Why not gpytorch's
`linear_cg` (linear_operator): it would add two libraries (and their pinned torch ranges) for the
thirty lines below, and its batched stopping rule and preconditioner interface are built around
kernel matrices; ours takes any matvec closure and reports each row's residual.

References:
    | Rectangular Flows for Manifold Learning (Caterini et al., 2021)
    | https://arxiv.org/abs/2106.01413
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import Tensor


@dataclasses.dataclass
class CGInfo:
    """iterations: matvecs done; residual: each row's final ‖r‖ / ‖b‖; converged: all rows within tol."""

    iterations: int
    residual: Tensor
    converged: bool


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


@torch.no_grad()
def conjugate_gradient(matvec: Callable[[Tensor], Tensor], b: Tensor, *, tol: float = 1e-5,
                       max_iter: int | None = None,
                       preconditioner: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, CGInfo]:
    """x with A x = b row by row, b of shape (N, d), matvec(v) = A v for v of shape (N, d).

    tol: relative residual ‖b - A x‖ / ‖b‖ at which a row stops; max_iter: the cap (default d, where
    exact arithmetic would be exact); preconditioner(r): M⁻¹ r for an SPD M ≈ A (e.g. a diagonal),
    or None. A row with b = 0 returns 0. Not differentiable (the estimator detaches its solve).
    """
    if b.dim() != 2:
        raise ValueError(f"conjugate_gradient: 'b' must be (N, d), got shape {tuple(b.shape)}")
    if not tol > 0:
        raise ValueError(f"conjugate_gradient: 'tol' must be > 0, got {tol}")
    d = b.shape[1]
    max_iter = d if max_iter is None else int(max_iter)
    if max_iter < 1:
        raise ValueError(f"conjugate_gradient: 'max_iter' must be >= 1, got {max_iter}")
    apply_m = preconditioner if preconditioner is not None else (lambda r: r)
    b_norm = b.norm(dim=-1)
    x = torch.zeros_like(b)
    r = b.clone()
    z = apply_m(r)
    p = z.clone()
    rz = _dot(r, z)
    active = b_norm > 0
    iterations = 0
    for iterations in range(1, max_iter + 1):
        Ap = matvec(p)
        pAp = _dot(p, Ap)
        alpha = torch.where(active, rz / torch.where(active, pAp, torch.ones_like(pAp)), torch.zeros_like(rz))
        x = x + alpha.unsqueeze(-1) * p
        r = r - alpha.unsqueeze(-1) * Ap
        active = active & (r.norm(dim=-1) > tol * b_norm)
        if not bool(active.any()):
            break
        z = apply_m(r)
        rz_new = _dot(r, z)
        beta = torch.where(active, rz_new / torch.where(active, rz, torch.ones_like(rz)), torch.zeros_like(rz))
        p = z + beta.unsqueeze(-1) * p
        rz = rz_new
    residual = torch.where(b_norm > 0, r.norm(dim=-1) / b_norm.clamp_min(torch.finfo(b.dtype).tiny),
                           torch.zeros_like(b_norm))
    return x, CGInfo(iterations, residual, bool((residual <= tol).all()))
