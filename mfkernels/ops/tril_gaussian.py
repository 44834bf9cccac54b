"""Log-density of the spread-flow prior: log N(z; 0, A A^T + sigma^2 I) for lower-triangular A
(paper 003, eqs 12-13: a learnable, possibly degenerate Gaussian; training adds sigma_Z^2 = 1e-4).

Three exact routes, picked per call:
- sigma > 0: one Cholesky factorisation of A A^T + sigma^2 I per call, shared by the batch (compiled
  driver `tril_gaussian_noisy_*`);
- sigma = 0, A of full rank: a triangular solve with A itself (`tril_gaussian_triangular_*`), O(B D^2);
- sigma = 0, A rank-deficient: the degenerate Gaussian on the range of A,
  -1/2 z^T (A A^T)^+ z - 1/2 log pdet(2 pi A A^T) for z in the range, -inf off it (SVD of A).
Gradients are analytic in all three (no autograd through a factorisation).

References:
    | Spread Flows for Manifold Modelling (Zhang et al., 2021)
    | https://arxiv.org/abs/2109.14216
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import reference
from ._autocast import float32_under_autocast
from ._autograd import derivative_kernel, input_anchors, tangent_aware_apply, zero_tangents
from ._checks import cannot_read_values, check_same_dtype_device, check_tensor
from ._registry import OpSpec, register
from ._vmap import merged_rows_rule, register_loop_vmap

_OP = "mfkernels.ops.tril_gaussian_log_prob"


class _Noisy(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(z, A, sigma):
        return torch.ops.mfkernels.tril_gaussian_noisy_forward(z, A, sigma)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.anchors = input_anchors(inputs)
        _, A, sigma = inputs
        _, C, w, C_block_inv = output
        ctx.mark_non_differentiable(C, w, C_block_inv)
        ctx.set_materialize_grads(False)  # no zero (D, D) / (N, D) gradients for the saved C and w
        ctx.save_for_backward(A, sigma, C, w, C_block_inv)
        ctx.save_for_forward(A, sigma, C, w, C_block_inv)

    @staticmethod
    def backward(ctx, grad, _grad_C, _grad_w, _grad_C_block_inv):
        if grad is None:
            return None, None, None
        A, sigma, C, w, C_block_inv = ctx.saved_tensors
        return derivative_kernel(
            _OP,
            ctx.anchors,
            torch.ops.mfkernels.tril_gaussian_noisy_backward,
            grad,
            A,
            sigma,
            C,
            w,
            C_block_inv,
            ctx.needs_input_grad[2],
        )

    @staticmethod
    def jvp(ctx, z_dot, A_dot, sigma_dot):
        A, sigma, C, w, _ = ctx.saved_tensors
        z_dot, A_dot, sigma_dot = zero_tangents((z_dot, w), (A_dot, A), (sigma_dot, sigma))
        out = derivative_kernel(_OP, ctx.anchors, torch.ops.mfkernels.tril_gaussian_noisy_jvp, z_dot, A_dot, sigma_dot,
                                A, sigma, C, w)
        return out, None, None, None


class _Triangular(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(z, A):
        return torch.ops.mfkernels.tril_gaussian_triangular_forward(z, A)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.anchors = input_anchors(inputs)
        _, A = inputs
        _, w = output
        ctx.mark_non_differentiable(w)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(A, w)
        ctx.save_for_forward(A, w)

    @staticmethod
    def backward(ctx, grad, _grad_w):
        if grad is None:
            return None, None
        A, w = ctx.saved_tensors
        return derivative_kernel(_OP, ctx.anchors, torch.ops.mfkernels.tril_gaussian_triangular_backward, grad, A, w)

    @staticmethod
    def jvp(ctx, z_dot, A_dot):
        A, w = ctx.saved_tensors
        z_dot, A_dot = zero_tangents((z_dot, w), (A_dot, A))
        return derivative_kernel(
            _OP, ctx.anchors, torch.ops.mfkernels.tril_gaussian_triangular_jvp, z_dot, A_dot, A, w
        ), None


_noisy_apply = tangent_aware_apply(_Noisy)
_triangular_apply = tangent_aware_apply(_Triangular)


class _Degenerate(torch.autograd.Function):
    """sigma = 0 and rank(A) = r < D: the Gaussian on range(A). With A = U S V^T (top r), p = U_r^T z,
    beta = (A A^T)^+ z = U_r S_r^-2 p: d/dz = -g beta, d/dA = tril(sum g beta (A^T beta)^T) - G tril(U_r S_r^-1 V_r^T)
    (d log pdet(A A^T) / 2 dA = (A^+)^T at fixed rank). Rows off the range get -inf, and their
    gradients 0 where the incoming gradient is 0, NaN otherwise. Tangent (forward mode, eager
    `torch.autograd.forward_ad`; torch.func transforms take the triangular route, as values cannot be
    read there): d log p = -beta.dz + (beta dL)(L^T beta) - <U_r S_r^-1 V_r^T, dL>, dL = tril(A_dot);
    NaN on rows off the range."""

    @staticmethod
    def forward(ctx, z, A, rank_tol):
        L = torch.tril(A)
        U, S, Vh = torch.linalg.svd(L)
        r = int((S > rank_tol * S[0]).sum())
        U, S, V = U[:, :r], S[:r], Vh[:r].mT
        p = z @ U
        off_range = (z - p @ U.mT).norm(dim=-1)
        inside = off_range <= rank_tol * z.norm(dim=-1)
        log_prob = -0.5 * (p / S).square().sum(-1) - S.log().sum() - 0.5 * r * math.log(2 * math.pi)
        ctx.save_for_backward(L, U, S, V, p, inside)
        ctx.save_for_forward(L, U, S, V, p, inside)
        return torch.where(inside, log_prob, torch.full_like(log_prob, -math.inf))

    @staticmethod
    def jvp(ctx, z_dot, A_dot, _rank_tol_dot):
        L, U, S, V, p, inside = ctx.saved_tensors
        beta = (p / S.square()) @ U.mT
        out = torch.zeros_like(inside, dtype=p.dtype)
        if z_dot is not None:
            out = out - (beta * z_dot).sum(-1)
        if A_dot is not None:
            dL = torch.tril(A_dot)
            out = out + ((beta @ dL) * (beta @ L)).sum(-1) - ((U / S) @ V.mT * dL).sum()
        return torch.where(inside, out, torch.full_like(out, math.nan))

    @staticmethod
    def backward(ctx, grad):
        L, U, S, V, p, inside = ctx.saved_tensors
        nan = torch.full_like(grad, math.nan)
        undefined = ~inside & (grad != 0)  # d(-inf) requested: no meaningful gradient
        g = torch.where(inside, grad, torch.zeros_like(grad))
        beta = (p / S.square()) @ U.mT
        grad_z = torch.where(undefined.unsqueeze(-1), nan.unsqueeze(-1), -g.unsqueeze(-1) * beta)
        grad_A = torch.tril((beta * g.unsqueeze(-1)).mT @ (beta @ L) - g.sum() * (U / S) @ V.mT)
        grad_A = torch.where(undefined.any(), torch.full_like(grad_A, math.nan), grad_A)
        return grad_z, grad_A, None


def _full_rank(L: Tensor, rank_tol: float) -> bool:
    """A triangular matrix is singular exactly when a diagonal entry is 0; relative to the largest.
    A non-finite diagonal counts as full rank: the triangular route then propagates the NaN (the
    degenerate route's SVD would refuse it with LAPACK's error instead)."""
    d = L.diagonal().abs()
    if not bool(torch.isfinite(d).all()):
        return True
    return bool(d.min() > rank_tol * d.max())


@float32_under_autocast
def tril_gaussian_log_prob(z: Tensor, A: Tensor, sigma: float | Tensor = 0.0, *,
                           rank_tol: float | None = None) -> Tensor:
    """log N(z; 0, A A^T + sigma^2 I) for z (..., D) and lower-triangular A (D, D) (only its lower
    triangle is read); returns z.shape[:-1].

    sigma: a float or 0-dim tensor >= 0 (differentiable when a tensor). sigma = 0 with a rank-deficient A
    gives the degenerate Gaussian on range(A): rank = number of singular values of A above
    rank_tol * the largest, z counts as in the range when its component off it is at most
    rank_tol * |z|, otherwise -inf. rank_tol defaults to sqrt(eps(dtype)).

    Differentiable (first order, reverse mode) in z, A and sigma; vmap-able; traceable by
    torch.compile, where values cannot be read: there a tensor sigma is taken to be > 0 and
    sigma = 0.0 to mean a full-rank A (a singular one then gives -inf/NaN instead of the degenerate density).

    Example:
        >>> A = torch.tril(torch.randn(1024, 1024)) / 32
        >>> tril_gaussian_log_prob(torch.randn(256, 1024), A, sigma=1e-2).shape
        torch.Size([256])
    """
    check_tensor(_OP, "z", z, min_dim=1)
    check_tensor(_OP, "A", A, min_dim=2)
    check_same_dtype_device(_OP, "z", z, "A", A)
    D = z.shape[-1]
    if A.shape != (D, D):
        raise ValueError(f"{_OP}: argument 'A' must be square (D, D) = ({D}, {D}) for z of shape {tuple(z.shape)}, "
                         f"got {tuple(A.shape)}")
    if rank_tol is None:
        rank_tol = torch.finfo(z.dtype).eps ** 0.5
    if not 0.0 <= float(rank_tol) < 1.0:
        raise ValueError(f"{_OP}: argument 'rank_tol' must be a float in [0, 1), got {rank_tol!r}")
    readable = not cannot_read_values()
    if isinstance(sigma, Tensor):
        if sigma.dim() != 0 or sigma.dtype != z.dtype or sigma.device != z.device:
            raise ValueError(f"{_OP}: argument 'sigma' must be a float or a 0-dim tensor of z's dtype and device, "
                             f"got shape {tuple(sigma.shape)}, {sigma.dtype} on {sigma.device}")
        value = float(sigma.detach()) if readable else None
        noisy = value is None or value != 0.0
        if value is not None and not value >= 0:
            raise ValueError(f"{_OP}: argument 'sigma' must be >= 0 (a standard deviation), got {value:g}")
    else:
        if not float(sigma) >= 0:
            raise ValueError(f"{_OP}: argument 'sigma' must be >= 0 (a standard deviation), got {sigma!r}")
        noisy = float(sigma) > 0
        sigma = torch.tensor(float(sigma), dtype=z.dtype, device=z.device)
    if D == 0:  # the Gaussian on R^0: log density 0 (every input kept in the graph)
        return z.sum(-1) * 0 + A.sum() * 0 + sigma * 0
    N = z.shape[:-1].numel()
    rows = z.reshape(N, D)
    if noisy:
        out = _noisy_apply(rows, A, sigma)[0]
    elif not readable or _full_rank(torch.tril(A).detach(), rank_tol):
        out = _triangular_apply(rows, A)[0] + 0 * sigma  # keeps sigma in the graph (its gradient at 0 is 0)
    else:
        out = _Degenerate.apply(rows, A, float(rank_tol)) + 0 * sigma
    return out.reshape(z.shape[:-1])


for _name, _shared in (("tril_gaussian_noisy_forward", (1, 3)), ("tril_gaussian_triangular_forward", ())):
    _qualname = f"mfkernels::{_name}"
    register_loop_vmap(_qualname, merged_rows_rule(_qualname, row_args=1, shared_outputs=_shared))
for _name in ("tril_gaussian_noisy_backward", "tril_gaussian_triangular_backward", "tril_gaussian_noisy_jvp",
              "tril_gaussian_triangular_jvp"):
    register_loop_vmap(f"mfkernels::{_name}")


def _bench_inputs(shape, dtype, device, generator):
    B, D = shape
    z = torch.randn(B, D, dtype=dtype, generator=generator)
    A = torch.tril(torch.randn(D, D, dtype=dtype, generator=generator)) / D**0.5 + torch.eye(D, dtype=dtype)
    sigma = torch.tensor(1e-2, dtype=dtype)  # sigma^2 = 1e-4, the spread-flow value
    return tuple(t.to(device).requires_grad_() for t in (z, A, sigma))


def _bench_torch_distributions():
    def log_prob(z, A, sigma):
        L = torch.tril(A)
        cov = L @ L.mT + sigma.square() * torch.eye(L.shape[-1], dtype=L.dtype, device=L.device)
        return torch.distributions.MultivariateNormal(torch.zeros_like(z[0]), cov).log_prob(z)

    return log_prob


register(
    OpSpec(
        name="tril_gaussian_log_prob",
        op=tril_gaussian_log_prob,
        reference=reference.tril_gaussian_log_prob,
        make_inputs=_bench_inputs,
        bench_shapes=[(256, 1024), (1024, 64)],
        gpu_bench_shapes=[(1024, 1024), (4096, 64)],
        shape_names="(B, D), sigma = 1e-2",
        primitives=("tril_gaussian_noisy_forward", "tril_gaussian_noisy_backward", "tril_gaussian_triangular_forward",
                    "tril_gaussian_triangular_backward", "tril_gaussian_noisy_jvp", "tril_gaussian_triangular_jvp"),
        baselines={"torch.distributions": _bench_torch_distributions},
    )
)
