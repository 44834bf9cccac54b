"""Fused rational-quadratic spline, the elementwise transform of neural spline flows (Durkan et al.
2019, eqs 4-6), used by the spline couplings of papers 000-004.

A drop-in for nflows' `unconstrained_rational_quadratic_spline` (same argument names, defaults and
shapes; tails="linear") that also takes tails=None for nflows' bounded `rational_quadratic_spline`
on [-tail_bound, tail_bound]^2. One compiled pass per element does the softmaxes, knot sums, bin
search, spline (forward, or inverse by the quadratic root) and log|dy/dx|; backward gives the
gradients of the input and of all three parameter tensors in one pass, and a compiled tangent
kernel serves forward-mode AD (jvp, jacfwd) without dense Jacobians. Second derivatives (reverse
mode through the tangent, double backward, hessian) run the backward kernel in dual numbers
(ops/_second_order.py).

References:
    | Neural Spline Flows (Durkan et al., 2019)
    | https://arxiv.org/abs/1906.04032
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import reference
from . import _second_order
from ._autocast import float32_under_autocast
from ._autograd import tangent_aware_apply, zero_tangents
from ._checks import cannot_read_values, check_same_dtype_device, check_tensor
from ._registry import OpSpec, register
from ._vmap import register_leading_batch_vmap

_OP = "mfkernels.ops.rq_spline"
DEFAULT_MIN_BIN_WIDTH = 1e-3
DEFAULT_MIN_BIN_HEIGHT = 1e-3
DEFAULT_MIN_DERIVATIVE = 1e-3


def _expand(t: Tensor, shape: torch.Size, last: int | None = None) -> Tensor:
    full = shape if last is None else (*shape, last)
    return t if t.shape == full else t.expand(full)


def _reduce(g: Tensor, like: Tensor) -> Tensor:
    """Gradient of a broadcast input: the sum over its copies."""
    return g if g.shape == like.shape else g.sum_to_size(like.shape)


_SECOND_ORDER = _second_order.SecondOrderSpec.of("rq_spline", num_outputs=2, num_primals=4)


class _RQSpline(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(inputs, widths, heights, derivatives, inverse, tails, tail_bound, min_w, min_h, min_d):
        shape = inputs.shape
        return torch.ops.mfkernels.rq_spline_forward(
            inputs, _expand(widths, shape, widths.shape[-1]), _expand(heights, shape, heights.shape[-1]),
            _expand(derivatives, shape, derivatives.shape[-1]), inverse, tails, tail_bound, min_w, min_h, min_d,
        )

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.options = inputs[4:]
        ctx.save_for_backward(*inputs[:4])
        ctx.save_for_forward(*inputs[:4])

    @staticmethod
    def backward(ctx, grad_outputs, grad_logabsdet):
        inputs, *params = ctx.saved_tensors
        shape = inputs.shape
        grads = _second_order.backward(
            _SECOND_ORDER, ctx.options, grad_outputs, grad_logabsdet, inputs,
            *(_expand(t, shape, t.shape[-1]) for t in params),
        )
        return (grads[0], *(_reduce(g, t) for g, t in zip(grads[1:], params)), *(None for _ in ctx.options))

    @staticmethod
    def jvp(ctx, inputs_dot, widths_dot, heights_dot, derivatives_dot, *_):
        saved = ctx.saved_tensors
        shape = saved[0].shape
        tangents = zero_tangents(*zip((inputs_dot, widths_dot, heights_dot, derivatives_dot), saved))
        params = [_expand(t, shape, t.shape[-1]) for t in saved[1:]]
        dots = [_expand(d, shape, d.shape[-1]) for d in tangents[1:]]
        return _second_order.jvp(_SECOND_ORDER, ctx.options, saved[0], *params, _expand(tangents[0], shape), *dots)


_apply = tangent_aware_apply(_RQSpline)


@float32_under_autocast
def rq_spline(
    inputs: Tensor,
    unnormalized_widths: Tensor,
    unnormalized_heights: Tensor,
    unnormalized_derivatives: Tensor,
    inverse: bool = False,
    tails: str | None = "linear",
    tail_bound: float = 1.0,
    min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
    min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
    min_derivative: float = DEFAULT_MIN_DERIVATIVE,
) -> tuple[Tensor, Tensor]:
    """Monotone rational-quadratic spline of `inputs` with K bins; returns (outputs, logabsdet).

    Shapes: inputs (...); unnormalized_widths and _heights (..., K); unnormalized_derivatives
    (..., K - 1) with tails="linear" (identity outside [-tail_bound, tail_bound], unit slope at the
    ends) or (..., K + 1) with tails=None (bounded spline; inputs outside raise ValueError in eager
    mode and come out NaN under torch.compile or torch.func transforms, which cannot read values). The
    parameters' leading dims broadcast against inputs (e.g. (D, K) parameters shared over a batch
    (B, D)). logabsdet is elementwise, log|d outputs / d inputs|, of the inputs' shape.
    `inverse=True` evaluates the exact inverse (and its logabsdet, minus the forward one).

    NaN policy: values are not checked in tails="linear" (no device sync); a NaN input passes through
    (it is not inside the interval), NaN parameters give NaN for their element only.
    """
    check_tensor(_OP, "inputs", inputs)
    params = {"unnormalized_widths": unnormalized_widths, "unnormalized_heights": unnormalized_heights,
              "unnormalized_derivatives": unnormalized_derivatives}
    for name, t in params.items():
        check_tensor(_OP, name, t, min_dim=1)
        check_same_dtype_device(_OP, "inputs", inputs, name, t)
    if tails not in ("linear", None):
        raise ValueError(f"{_OP}: argument 'tails' must be 'linear' or None, got {tails!r}")
    K = unnormalized_widths.shape[-1]
    if K < 1:
        raise ValueError(f"{_OP}: argument 'unnormalized_widths' must hold K >= 1 bins in its last dimension, "
                         f"got shape {tuple(unnormalized_widths.shape)}")
    expected = K - 1 if tails == "linear" else K + 1
    if unnormalized_heights.shape[-1] != K or unnormalized_derivatives.shape[-1] != expected:
        raise ValueError(
            f"{_OP}: with {K} bins (unnormalized_widths {tuple(unnormalized_widths.shape)}) expected "
            f"unnormalized_heights (..., {K}) and unnormalized_derivatives (..., {expected}) for tails={tails!r}, "
            f"got {tuple(unnormalized_heights.shape)} and {tuple(unnormalized_derivatives.shape)}"
        )
    try:
        shape = torch.broadcast_shapes(inputs.shape, *(t.shape[:-1] for t in params.values()))
    except RuntimeError:
        raise ValueError(
            f"{_OP}: the leading dims of the parameters {[tuple(t.shape[:-1]) for t in params.values()]} do not "
            f"broadcast against 'inputs' {tuple(inputs.shape)}"
        ) from None
    if shape != inputs.shape:
        raise ValueError(
            f"{_OP}: the parameters may broadcast over 'inputs' {tuple(inputs.shape)} but not enlarge it "
            f"(broadcast shape {tuple(shape)})"
        )
    # The domain check reads a value back (as nflows does); where that is impossible (compiled
    # graphs, torch.func transforms) out-of-domain elements come out NaN instead.
    if tails is None and inputs.numel() and not cannot_read_values():
        outside = int((inputs.abs() > tail_bound).sum())
        if outside:
            raise ValueError(
                f"{_OP}: {outside} element(s) of 'inputs' lie outside [-tail_bound, tail_bound] = "
                f"[{-tail_bound}, {tail_bound}], the domain of the bounded spline (tails=None)"
            )
    return _apply(
        inputs, unnormalized_widths, unnormalized_heights, unnormalized_derivatives, bool(inverse), tails,
        float(tail_bound), float(min_bin_width), float(min_bin_height), float(min_derivative),
    )


for _name in ("rq_spline_forward", "rq_spline_backward", "rq_spline_jvp", "rq_spline_backward_jvp"):
    register_leading_batch_vmap(f"mfkernels::{_name}")


def _bench_inputs(shape, dtype, device, generator):
    B, D, K = shape
    x = torch.randn(B, D, dtype=dtype, generator=generator)  # a third land in the linear tails (|x| > 1)
    params = [torch.randn(B, D, n, dtype=dtype, generator=generator) for n in (K, K, K - 1)]
    return tuple(t.to(device).requires_grad_() for t in (x, *params))


def _bench_nflows():
    try:
        from nflows.transforms.splines.rational_quadratic import unconstrained_rational_quadratic_spline
    except ImportError:
        return None

    return unconstrained_rational_quadratic_spline


register(
    OpSpec(
        name="rq_spline",
        op=rq_spline,
        reference=reference.rq_spline,
        make_inputs=_bench_inputs,
        bench_shapes=[(4096, 64, 8), (256, 16, 8), (1024, 64, 32)],
        gpu_bench_shapes=[(65536, 64, 8), (4096, 64, 8)],
        shape_names="(B, D, K)",
        primitives=("rq_spline_forward", "rq_spline_backward", "rq_spline_jvp", "rq_spline_backward_jvp"),
        baselines={"nflows": _bench_nflows},
        second_order=True,
    )
)
