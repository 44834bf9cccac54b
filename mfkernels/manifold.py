"""Exact densities of injective generators g: R^d -> R^D (M-flow density, paper 000 eq. 16).

A model that generates x = g(u') from a standard normal u' has, on its manifold, the density
p(x) = N(u'; 0, I) · det(JᵀJ)^(-1/2) with J = ∂g/∂u' (D × d). `generator_log_volume` computes
½ log det(JᵀJ) exactly: the d columns of J are d forward-mode tangents (Jacobian-vector products)
pushed through g in *one* call on a batch stacked d times, then `ops.gram_logdet` factors JᵀJ. Every
mfkernels layer carries its tangent in a compiled kernel, so this is d forward passes' worth of work
instead of the D backward passes (or B per-point Jacobians) of autograd.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from . import ops
from .flows import standard_normal_log_prob


def generator_jacobian(g: Callable[[Tensor], Tensor], u: Tensor) -> tuple[Tensor, Tensor]:
    """(g(u), J) for a row-wise generator g: (B, d) -> (B, D); J = ∂g/∂u of shape (B, D, d).

    g must treat rows independently (any flow in eval mode does). The d tangent directions are the
    unit vectors e_k; input and tangents are stacked into one (d·B, d) batch and pushed through
    `torch.func.jvp` once.
    """
    if u.dim() != 2:
        raise ValueError(f"generator_jacobian: 'u' must be (B, d), got shape {tuple(u.shape)}")
    B, d = u.shape
    if B == 0:
        x = g(u)
        return x, x.new_zeros(0, x.shape[-1], d)
    # repeat (not expand): forward AD refuses inputs whose elements share memory (B = 1 would)
    stacked = u.repeat(d, 1)
    tangents = torch.eye(d, dtype=u.dtype, device=u.device).repeat_interleave(B, dim=0)
    x, columns = torch.func.jvp(g, (stacked,), (tangents,))
    if x.dim() != 2 or x.shape[0] != d * B:
        raise ValueError(f"generator_jacobian: g must map (B, d) to (B, D), got output shape {tuple(x.shape)}")
    J = columns.reshape(d, B, -1).permute(1, 2, 0)
    return x[:B], J


def generator_log_volume(g: Callable[[Tensor], Tensor], u: Tensor, *, rtol: float | None = None) -> Tensor:
    """½ log det(JᵀJ), J = ∂g/∂u, for each row of u (B, d): the log of the volume g stretches a small
    d-cube at u into. Returns (B,). Where J loses rank the result is -inf (see ops.gram_logdet).

    Differentiable in u and g's parameters only as far as forward-mode tangents are in reverse mode;
    it is meant for evaluation (M-flow's density is evaluated, not trained, with it). The tangents run
    in g's dtype; the Gram factorisation always in float64.
    """
    _, J = generator_jacobian(g, u)
    # JᵀJ squares J's condition number: float32 would call a flow's J singular beyond cond ~1e3, so
    # the (small, B x D x d) Jacobian is factored in float64.
    return ops.gram_logdet(J.to(torch.float64), rtol=rtol).to(J.dtype)


@torch.no_grad()
def manifold_log_prob(model, x: Tensor, batch_size: int = 4096) -> Tensor:
    """log p(x) = log N(u'; 0, I) - ½ log det(JᵀJ) on the model's manifold, u' = model.encode(x),
    J = ∂ model.decode / ∂u'. Points off the manifold get the density of their projection.
    Works for every model with a generator (DNF, M-flow, PIE); evaluated in batches of batch_size."""
    out = []
    for chunk in x.split(batch_size):
        u = model.encode(chunk)
        out.append(standard_normal_log_prob(u) - generator_log_volume(model.decode, u))
    return torch.cat(out) if out else x.new_zeros(0)
