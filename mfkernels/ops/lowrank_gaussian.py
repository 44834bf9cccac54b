"""Low-rank-plus-diagonal Gaussian log-density: log N(x; loc, W W^T + diag(diag)), W (D, K).

The Gaussian NIF marginal (paper 001, eq 41: x = A z + b + eps, z ~ N(0, I), eps ~ N(0, diag)) and
a drop-in for `torch.distributions.LowRankMultivariateNormal(loc, W, diag).log_prob(x)`: same
values and gradients, in O(B D K + D K^2 + K^3) by Woodbury and the determinant lemma. The compiled
driver (csrc/ops/lowrank_gaussian.cpp) factors the K x K capacitance once per call, shares it over
the batch, and differentiates analytically (no autograd through the Cholesky factorisation).

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
from ._checks import cannot_read_values, check_same_dtype_device, check_tensor
from ._registry import OpSpec, register
from ._vmap import merged_rows_rule, register_loop_vmap

_OP = "mfkernels.ops.lowrank_gaussian_log_prob"


class _LowRankGaussian(torch.autograd.Function):
    """Rows x (N, D); loc (N, D), or (1, D) when one loc serves every row (its gradient is then reduced
    before it is negated: no (N, D) temporary); W (D, K); diag (D,). Other broadcasting is done outside,
    by autograd."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, loc, W, diag):
        return torch.ops.mfkernels.lowrank_gaussian_log_prob_forward(x, loc.expand_as(x), W, diag)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.anchors = input_anchors(inputs)
        x, loc, W, diag = inputs
        _, s, v, cinv = output
        ctx.mark_non_differentiable(s, v, cinv)
        ctx.set_materialize_grads(False)  # no zero (N, D) gradient for the saved s
        ctx.shared_loc = loc.shape[0] != x.shape[0]
        ctx.save_for_backward(W, diag, s, v, cinv)
        ctx.save_for_forward(W, diag, s, v, cinv)

    @staticmethod
    def backward(ctx, grad, _grad_s, _grad_v, _grad_cinv):
        if grad is None:
            return None, None, None, None
        W, diag, s, v, cinv = ctx.saved_tensors
        grad_r, grad_W, grad_diag = derivative_kernel(
            _OP, ctx.anchors, torch.ops.mfkernels.lowrank_gaussian_log_prob_backward, grad, W, diag, s, v, cinv)
        grad_loc = None
        if ctx.needs_input_grad[1]:
            grad_loc = grad_r.sum(0, keepdim=True).neg_() if ctx.shared_loc else -grad_r
        return grad_r, grad_loc, grad_W, grad_diag

    @staticmethod
    def jvp(ctx, x_dot, loc_dot, W_dot, diag_dot):
        W, diag, s, v, cinv = ctx.saved_tensors
        r_dot, W_dot, diag_dot = zero_tangents((x_dot, s), (W_dot, W), (diag_dot, diag))
        if loc_dot is not None:
            r_dot = r_dot - loc_dot
        out = derivative_kernel(_OP, ctx.anchors, torch.ops.mfkernels.lowrank_gaussian_log_prob_jvp,
                                W, diag, s, v, cinv, r_dot, W_dot, diag_dot)
        return out, None, None, None


_apply = tangent_aware_apply(_LowRankGaussian)


@float32_under_autocast
def lowrank_gaussian_log_prob(x: Tensor, loc: Tensor, W: Tensor, diag: Tensor) -> Tensor:
    """log N(x; loc, W W^T + diag(diag)) for x (..., D), loc broadcastable to x, W (D, K), diag (D,)
    (or broadcastable to it); returns x.shape[:-1]. Same values and gradients as
    `torch.distributions.LowRankMultivariateNormal(loc, W, diag).log_prob(x)`.

    Differentiable (first order) in x, loc, W and diag in reverse and forward mode, vmap-able,
    traceable by torch.compile. diag must be positive: checked in eager mode (a ValueError naming
    the argument); under torch.compile / torch.func, where values cannot be read, a non-positive
    or non-finite diag or W gives NaN.

    Example:
        >>> x, W = torch.randn(256, 3072), 0.1 * torch.randn(3072, 64)
        >>> lowrank_gaussian_log_prob(x, torch.zeros(3072), W, torch.ones(3072)).shape
        torch.Size([256])
    """
    for name, t in (("x", x), ("loc", loc), ("W", W), ("diag", diag)):
        check_tensor(_OP, name, t, min_dim=2 if name == "W" else (1 if name == "x" else 0))
        check_same_dtype_device(_OP, "x", x, name, t)
    D = x.shape[-1]
    if W.dim() != 2 or W.shape[0] != D:
        raise ValueError(f"{_OP}: argument 'W' must have shape (D, K) = ({D}, K) for x of shape {tuple(x.shape)}, "
                         f"got {tuple(W.shape)}")
    try:
        diag_d = diag.expand(D)
    except RuntimeError:
        raise ValueError(f"{_OP}: argument 'diag' must have shape ({D},) (or broadcast to it), "
                         f"got {tuple(diag.shape)}") from None
    try:
        batch = torch.broadcast_shapes(x.shape, loc.shape)
    except RuntimeError:
        batch = None
    if batch != x.shape:
        raise ValueError(f"{_OP}: argument 'loc' of shape {tuple(loc.shape)} must broadcast to x's shape "
                         f"{tuple(x.shape)}")
    if not cannot_read_values() and diag.numel() and not bool((diag > 0).all()):
        raise ValueError(f"{_OP}: argument 'diag' must be positive (it is the diagonal of a covariance), "
                         f"got min {diag.min().item():g}")
    N = x.shape[:-1].numel()
    rows = x.reshape(N, D)
    if all(n == 1 for n in loc.shape[:-1]) and N != 1:  # one loc for every row
        loc_rows = loc.expand(*loc.shape[:-1], D).reshape(1, D)
    else:
        loc_rows = loc.expand(x.shape).reshape(N, D)
    return _apply(rows, loc_rows, W, diag_d)[0].reshape(x.shape[:-1])


_FORWARD = "mfkernels::lowrank_gaussian_log_prob_forward"
register_loop_vmap(_FORWARD, merged_rows_rule(_FORWARD, row_args=2, shared_outputs=(3,)))  # vmap over x, loc
register_loop_vmap("mfkernels::lowrank_gaussian_log_prob_backward")
register_loop_vmap("mfkernels::lowrank_gaussian_log_prob_jvp")


def _bench_inputs(shape, dtype, device, generator):
    """shape (B, D, K), or (B, D, K, 0) for data x that does not require grad (a likelihood's usual case)."""
    B, D, K = shape[:3]
    x_grad = len(shape) < 4 or bool(shape[3])
    x = torch.randn(B, D, dtype=dtype, generator=generator)
    loc = torch.randn(D, dtype=dtype, generator=generator)
    W = torch.randn(D, K, dtype=dtype, generator=generator) / K**0.5
    diag = 0.5 + torch.rand(D, dtype=dtype, generator=generator)
    x = x.to(device).requires_grad_(x_grad)
    return (x,) + tuple(t.to(device).requires_grad_() for t in (loc, W, diag))


def _bench_torch_distributions():
    return lambda x, loc, W, diag: torch.distributions.LowRankMultivariateNormal(loc, W, diag).log_prob(x)


register(
    OpSpec(
        name="lowrank_gaussian_log_prob",
        op=lowrank_gaussian_log_prob,
        reference=reference.lowrank_gaussian_log_prob,
        make_inputs=_bench_inputs,
        bench_shapes=[(256, 3072, 64), (256, 3072, 64, 0), (1024, 64, 8)],
        gpu_bench_shapes=[(4096, 3072, 64), (4096, 3072, 64, 0), (65536, 64, 8)],
        shape_names="(B, D, K[, x requires grad])",
        primitives=("lowrank_gaussian_log_prob_forward", "lowrank_gaussian_log_prob_backward",
                    "lowrank_gaussian_log_prob_jvp"),
        baselines={"torch.distributions": _bench_torch_distributions},
    )
)
