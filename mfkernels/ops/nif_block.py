"""Gaussian NIF layer with block-diagonal A (paper 001: noisy injective flows; closed-form marginal
eq 41, manifold term eq 9, stochastic-inverse mean eq 42), for A that is block-diagonal after a pixel
permutation, e.g. nearest-neighbour upsampling of a c-channel latent image (see `mfkernels.flows.nif_layout`).

`nif_block(x, A, b, log_sigma)` evaluates all four quantities for P blocks at once; the compiled
driver (csrc/ops/nif_block.cpp) factors each block's c x c precision once per call, shares it over the
batch, never builds the dense N x M matrix, and differentiates analytically.
`nif_sample_posterior` draws z from the stochastic inverse q(z | x) = N(Lambda^-1 u, Lambda^-1).

References:
    | Normalizing Flows Across Dimensions (Cunningham et al., 2020)
    | https://arxiv.org/abs/2006.13070
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import reference
from ._autocast import float32_under_autocast
from ._autograd import derivative_kernel, input_anchors, tangent_aware_apply, zero_tangents
from ._checks import check_same_dtype_device, check_tensor
from ._registry import OpSpec, register
from ._vmap import register_loop_vmap

_OP = "mfkernels.ops.nif_block"


class _NifBlock(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, A, b, log_sigma):
        # b (any shape broadcasting to x's) is read in place by the kernels when it broadcasts over the batch
        return torch.ops.mfkernels.nif_block_forward(x, A, b.expand(x.shape), log_sigma)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.anchors = input_anchors(inputs)
        _, A, b, log_sigma = inputs
        ctx.b_shape = b.shape
        _, _, z_mean, z_point, t, u, K1, K0 = output
        ctx.mark_non_differentiable(t, u, K1, K0)
        ctx.set_materialize_grads(False)  # no zero gradients built for the saved t, u, K1, K0
        ctx.save_for_backward(A, log_sigma, t, u, z_mean, z_point, K1, K0)
        ctx.save_for_forward(A, log_sigma, t, z_mean, z_point, K1, K0)

    @staticmethod
    def backward(ctx, g_log_px, g_manifold, g_z_mean, g_z_point, *_saved_grads):
        A, log_sigma, t, u, z_mean, z_point, K1, K0 = ctx.saved_tensors
        grads = [g if g is not None else torch.zeros_like(like)
                 for g, like in ((g_log_px, t[:, 0, 0]), (g_manifold, t[:, 0, 0]), (g_z_mean, z_mean),
                                 (g_z_point, z_point))]
        grad_x, grad_A, grad_log_sigma = derivative_kernel(
            _OP,
            ctx.anchors,
            torch.ops.mfkernels.nif_block_backward,
            *grads,
            A,
            log_sigma,
            t,
            u,
            z_mean,
            z_point,
            K1,
            K0,
        )
        # b's gradient reduced to its own shape first, so the (B, P, r) negation is never materialised
        grad_b = grad_x.sum_to_size(ctx.b_shape).neg() if ctx.needs_input_grad[2] else None
        return grad_x, grad_A, grad_b, grad_log_sigma

    @staticmethod
    def jvp(ctx, x_dot, A_dot, b_dot, log_sigma_dot):
        A, log_sigma, t, z_mean, z_point, K1, K0 = ctx.saved_tensors
        x_dot, A_dot, b_dot, log_sigma_dot = zero_tangents(
            (x_dot, t), (A_dot, A), (b_dot, t), (log_sigma_dot, log_sigma)
        )
        # tangents of broadcast inputs come in their own shapes
        x_dot, b_dot, log_sigma_dot = (
            x_dot.expand(t.shape),
            b_dot.expand(t.shape),
            log_sigma_dot.expand(log_sigma.shape),
        )
        tangents = derivative_kernel(_OP, ctx.anchors, torch.ops.mfkernels.nif_block_jvp, x_dot, A_dot, b_dot,
                                     log_sigma_dot, A, log_sigma, t, z_mean, z_point, K1, K0)
        return (*tangents, None, None, None, None)


_apply = tangent_aware_apply(_NifBlock)


def _validate(x: Tensor, A: Tensor, b: Tensor, log_sigma: Tensor) -> tuple[Tensor, Tensor]:
    for name, t in (("x", x), ("A", A), ("b", b), ("log_sigma", log_sigma)):
        check_tensor(_OP, name, t)
        check_same_dtype_device(_OP, "x", x, name, t)
    if A.dim() != 3:
        raise ValueError(f"{_OP}: argument 'A' must be (P, r, c) blocks, got shape {tuple(A.shape)}")
    P, r, c = A.shape
    if x.dim() != 3 or x.shape[1:] != (P, r):
        raise ValueError(f"{_OP}: argument 'x' must be (B, P, r) = (B, {P}, {r}) for A of shape {tuple(A.shape)}, "
                         f"got {tuple(x.shape)}")
    if c > r:
        raise ValueError(f"{_OP}: argument 'A' must have c <= r (an injective layer, A_p of full column rank), "
                         f"got r = {r}, c = {c}")
    try:
        b = b.expand(x.shape)
    except RuntimeError:
        raise ValueError(f"{_OP}: argument 'b' of shape {tuple(b.shape)} must broadcast to x's shape "
                         f"{tuple(x.shape)}") from None
    try:
        log_sigma = log_sigma.expand(P, r)
    except RuntimeError:
        raise ValueError(f"{_OP}: argument 'log_sigma' of shape {tuple(log_sigma.shape)} must broadcast to "
                         f"(P, r) = ({P}, {r})") from None
    return b, log_sigma


@float32_under_autocast
def nif_block(x: Tensor, A: Tensor, b: Tensor, log_sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gaussian NIF layer x = A z + b + eps, eps ~ N(0, diag(exp(2 log_sigma))), A block-diagonal.

    Shapes: x (B, P, r); A (P, r, c) with c <= r; b broadcastable to (B, P, r); log_sigma to (P, r).
    Returns, per sample, summed over blocks:
      log_px (B,): log of the closed-form marginal with a unit-Gaussian prior on z (eq 41), i.e.
        log N(x; b, A A^T + Sigma) (the prior's -c/2 log 2 pi of eq 53 kept);
      manifold_term (B,): log Z_z - log Z_x, the ELBO's manifold term (eq 9); needs each Lambda_p =
        A_p^T Sigma_p^-1 A_p invertible (NaN for a block whose A_p is rank-deficient);
      z_mean (B, P, c): posterior mean (I + Lambda)^-1 u under the unit prior;
      z_point (B, P, c): Lambda^-1 u (eq 42), the stochastic inverse's mean.
    Differentiable in all four inputs, in reverse mode (compiled backward) and forward mode (compiled
    jvp: torch.func.jvp / jacfwd); vmap-able (a per-slice loop over vmapped arguments).
    """
    _, log_sigma = _validate(x, A, b, log_sigma)
    log_px, manifold, z_mean, z_point = _apply(x, A, b, log_sigma)[:4]
    return log_px, manifold, z_mean, z_point


@float32_under_autocast
def nif_sample_posterior(x: Tensor, A: Tensor, b: Tensor, log_sigma: Tensor,
                         generator: torch.Generator | None = None) -> Tensor:
    """z ~ q(z | x) = N(Lambda^-1 u, Lambda^-1) per block (eq 39), shape (B, P, c): the stochastic
    inverse of the layer. Reparameterised (differentiable through the mean and the factor)."""
    b, log_sigma = _validate(x, A, b, log_sigma)
    _, _, _, z_point = nif_block(x, A, b, log_sigma)
    precision = A.mT @ (A * torch.exp(-2 * log_sigma).unsqueeze(-1))  # Lambda (P, c, c)
    L, info = torch.linalg.cholesky_ex(precision)
    # a singular Lambda (rank-deficient block): NaN samples for that block, as nif_block's z_point and
    # manifold term are NaN there (LAPACK's error would name neither the op nor the block)
    singular = info > 0
    if bool(singular.any()):
        L = torch.where(singular[:, None, None], torch.eye(L.shape[-1], dtype=L.dtype, device=L.device), L)
    eps = torch.randn(z_point.shape, generator=generator, dtype=x.dtype, device=x.device)
    # Lambda = L L^T, so L^-T eps has covariance Lambda^-1
    noise = torch.linalg.solve_triangular(L.mT.unsqueeze(0), eps.unsqueeze(-1), upper=True).squeeze(-1)
    return torch.where(singular[None, :, None], torch.full_like(z_point, float("nan")), z_point + noise)


register_loop_vmap("mfkernels::nif_block_forward")
register_loop_vmap("mfkernels::nif_block_backward")
register_loop_vmap("mfkernels::nif_block_jvp")


def _bench_inputs(shape, dtype, device, generator):
    B, P, r, c = shape
    x = torch.randn(B, P, r, dtype=dtype, generator=generator)
    A = torch.randn(P, r, c, dtype=dtype, generator=generator) / r**0.5
    b = 0.1 * torch.randn(P, r, dtype=dtype, generator=generator)
    log_sigma = -1.0 + 0.1 * torch.randn(P, r, dtype=dtype, generator=generator)
    return tuple(t.to(device).requires_grad_() for t in (x, A, b, log_sigma))


def _bench_dense():
    """The dense route: LowRankMultivariateNormal with the assembled block-diagonal A (N x M) and the
    shared mean b of shape (N,), as a user would write it: one capacitance factorisation for the whole
    batch (a per-row (B, N) mean would make torch.distributions repeat it B times)."""

    def log_px(x, A, b, log_sigma):
        dense_A = torch.block_diag(*A)
        N = dense_A.shape[0]
        loc = b.reshape(N) if b.dim() == 2 else b.expand(x.shape).reshape(x.shape[0], N)
        cov_diag = torch.exp(2 * log_sigma).reshape(N)
        return torch.distributions.LowRankMultivariateNormal(loc, dense_A, cov_diag).log_prob(x.reshape(x.shape[0], N))

    return log_px


register(
    OpSpec(
        name="nif_block",
        op=nif_block,
        reference=reference.nif_block,
        make_inputs=_bench_inputs,
        bench_shapes=[(128, 256, 12, 3), (64, 64, 16, 4)],
        gpu_bench_shapes=[(1024, 4096, 12, 3), (128, 256, 12, 3)],
        shape_names="(B, P, r, c)",
        primitives=("nif_block_forward", "nif_block_backward", "nif_block_jvp"),
        baselines={"dense": _bench_dense},
    )
)
