"""Exact densities of injective generators g: R^d -> R^D (M-flow density, paper 000 eq. 16).

A model that generates x = g(u') from a standard normal u' has, on its manifold, the density
p(x) = N(u'; 0, I) · det(JᵀJ)^(-1/2) with J = ∂g/∂u' (D × d). `generator_log_volume` computes
½ log det(JᵀJ) exactly: the d columns of J are d forward-mode tangents (Jacobian-vector products)
pushed through g together (one primal pass, the tangents batched), then `ops.gram_logdet` factors
JᵀJ. Every mfkernels layer carries its tangent in a compiled kernel, so this is d forward passes'
worth of work instead of the D backward passes (or B per-point Jacobians) of autograd. The ops'
tangents have a reverse mode (ops/_second_order.py), so the exact log-volume is trainable
(rectangular flows, Caterini et al. 2021); `stochastic_log_volume` is its Hutchinson + conjugate
gradient estimate for large d.

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
    | Rectangular Flows for Manifold Learning (Caterini et al., 2021)
    | https://arxiv.org/abs/2106.01413
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import Tensor

from . import ops
from .flows import standard_normal_log_prob


def generator_jacobian(g: Callable[[Tensor], Tensor], u: Tensor) -> tuple[Tensor, Tensor]:
    """(g(u), J) for a row-wise generator g: (B, d) -> (B, D); J = ∂g/∂u of shape (B, D, d).

    g must treat rows independently (any flow in eval mode does). The d tangent directions are the
    unit vectors e_k, pushed through `torch.func.jvp` under `torch.func.vmap` over the directions:
    g's primal runs once on the (B, d) batch and only the tangents are batched d-fold (as
    vmap(jacfwd) does), each mfkernels layer taking all d tangents in one fused call. The result is
    differentiable in u and in g's parameters (the ops' tangents have a reverse mode).
    """
    if u.dim() != 2:
        raise ValueError(f"generator_jacobian: 'u' must be (B, d), got shape {tuple(u.shape)}")
    B, d = u.shape
    if B == 0:
        x = g(u)
        return x, x.new_zeros(0, x.shape[-1], d)
    directions = torch.eye(d, dtype=u.dtype, device=u.device).unsqueeze(1).expand(d, B, d)
    x, columns = torch.func.vmap(lambda t: torch.func.jvp(g, (u,), (t,)), out_dims=(None, 0))(directions)
    if x.dim() != 2 or x.shape[0] != B:
        raise ValueError(f"generator_jacobian: g must map (B, d) to (B, D), got output shape {tuple(x.shape)}")
    return x, columns.permute(1, 2, 0)


def generator_log_volume(g: Callable[[Tensor], Tensor], u: Tensor, *, rtol: float | None = None) -> Tensor:
    """½ log det(JᵀJ), J = ∂g/∂u, for each row of u (B, d): the log of the volume g stretches a small
    d-cube at u into. Returns (B,). Where J loses rank the result is -inf (see ops.gram_logdet).

    Differentiable in u and in g's parameters, exactly (reverse mode through the ops' tangents), so
    it can be trained (RectangularFlow, logdet="exact"), as long as g's own layers are mfkernels
    flows or plain torch. The tangents run in g's dtype; the Gram factorisation always in float64.
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


def stochastic_log_volume(g: Callable[[Tensor], Tensor], u: Tensor, *, probes: int | Tensor = 1,
                          distribution: str = "rademacher", tol: float = 1e-5, max_iter: int | None = None,
                          preconditioner: Callable[[Tensor], Tensor] | None = None,
                          generator: torch.Generator | None = None, return_info: bool = False):
    """A surrogate (B,) whose gradient is an unbiased estimate of ∇ ½ log det(JᵀJ), J = ∂g/∂u, for
    each row of u (B, d), and whose *value is zero* (add it to a loss; it changes no number you log).

    Rectangular flows' estimator (Caterini et al. 2021, eq. 12): with probes ε, E[εεᵀ] = I, and
    ξ = (JᵀJ)⁻¹ε by conjugate gradients on the products Jᵀ(J v) (one forward-mode pass through the
    fused tangents and one reverse pass per iteration, no graph kept),
        ∇ ½ log det(JᵀJ) = ½ tr((JᵀJ)⁻¹ ∇(JᵀJ)) = E_ε[(J ξ)ᵀ ∇(J ε)],
    so the surrogate is ⟨stop_grad(J ξ), J ε⟩ averaged over `probes`, minus its own value. Cost per
    step: (CG iterations) x (one jvp + one vjp) + two jvps, against d jvps and a Cholesky for the exact
    log-volume: worth it when d is large. tol / max_iter / preconditioner go to
    `conjugate_gradient` (max_iter defaults to d); `return_info` adds its CGInfo.

    probes: how many probes per row (drawn with `generator` from `distribution`: "rademacher", ±1 entries,
    Hutchinson's choice and of lower variance, 3x lower error than "gaussian" in our tests), or a (P, d)
    tensor of probe vectors used for every row (√d times the unit vectors give the exact gradient).
    """
    from .conjugate_gradient import conjugate_gradient

    if u.dim() != 2:
        raise ValueError(f"stochastic_log_volume: 'u' must be (B, d), got shape {tuple(u.shape)}")
    B, d = u.shape
    if isinstance(probes, Tensor):
        if probes.dim() != 2 or probes.shape[1] != d or probes.shape[0] < 1:
            raise ValueError(f"stochastic_log_volume: probe vectors must be (P, {d}), got {tuple(probes.shape)}")
        eps = probes.to(u).repeat_interleave(B, dim=0)
        probes = len(probes)
    elif probes < 1:
        raise ValueError(f"stochastic_log_volume: 'probes' must be >= 1, got {probes}")
    elif distribution == "gaussian":
        eps = torch.randn(probes * B, d, dtype=u.dtype, generator=generator, device="cpu").to(u.device)
    elif distribution == "rademacher":
        signs = torch.randint(0, 2, (probes * B, d), generator=generator, device="cpu")
        eps = (2 * signs - 1).to(dtype=u.dtype, device=u.device)
    else:
        raise ValueError(f"stochastic_log_volume: 'distribution' must be 'rademacher' or 'gaussian', "
                         f"got {distribution!r}")
    repeated = u.repeat(probes, 1)  # probe k of row b is row k * B + b; repeat keeps u's graph
    point = repeated.detach()
    with torch.no_grad():
        _, pullback = torch.func.vjp(g, point)

        def gram_matvec(v: Tensor) -> Tensor:  # (JᵀJ) v = Jᵀ (J v)
            return pullback(torch.func.jvp(g, (point,), (v,))[1])[0]

        xi, info = conjugate_gradient(gram_matvec, eps, tol=tol, max_iter=max_iter, preconditioner=preconditioner)
        finite = info.residual[torch.isfinite(info.residual)]
        if len(finite) and float(finite.max()) > tol:  # a biased gradient, not silently (NaN rows stay NaN)
            warnings.warn(f"stochastic_log_volume: conjugate gradients stopped after {info.iterations} iterations "
                          f"with relative residual {float(finite.max()):.2e} > tol {tol:g}; the gradient estimate "
                          f"is biased by that much: raise max_iter (cg_max_iter) or tol (cg_tol)", stacklevel=2)
        J_xi = torch.func.jvp(g, (point,), (xi,))[1]
    _, J_eps = torch.func.jvp(g, (repeated,), (eps,))  # with the graph to g's parameters and to u
    surrogate = (J_xi * J_eps).sum(-1).reshape(probes, B).mean(0)
    surrogate = surrogate - surrogate.detach()
    return (surrogate, info) if return_info else surrogate
