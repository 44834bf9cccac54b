"""Fused affine coupling transform, the elementwise core of every coupling flow (papers 000-004).

    forward:  y = x * exp(a) + t,      logabsdet = sum over non-batch dims of a
    inverse:  x = (y - t) * exp(-a),   logabsdet = -sum of a

with a the effective log-scale: s (exp), c tanh(s / c) (softclamp), log sigmoid(s + 2) (sigmoid,
Glow's scale), s - mean(s) (volume_preserving: spread flows' volume-preserving coupling, paper 003,
logabsdet exactly 0). One compiled pass computes y and logabsdet; backward and forward-mode tangent
are compiled kernels too, so jvp/jacfwd through a flow never builds a dense Jacobian. Second
derivatives (reverse mode through the tangent, double backward) run the backward kernel in dual
numbers (ops/_second_order.py).

References:
    | Spread Flows for Manifold Modelling (Zhang et al., 2021)
    | https://arxiv.org/abs/2109.14216
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import reference
from . import _second_order
from ._autocast import float32_under_autocast
from ._autograd import tangent_aware_apply, zero_tangents
from ._checks import check_same_dtype_device, check_tensor
from ._registry import OpSpec, register
from ._vmap import register_row_vmap

_OP = "mfkernels.ops.affine_coupling"
MODES = ("exp", "softclamp", "sigmoid", "volume_preserving")


def _broadcast_shape(*tensors: Tensor) -> torch.Size:
    """torch.broadcast_shapes, skipped in the common case of equal shapes (it costs more than a small kernel)."""
    shape = tensors[0].shape
    if all(t.shape == shape for t in tensors[1:]):
        return shape
    return torch.broadcast_shapes(*(t.shape for t in tensors))


def _as_rows(t: Tensor, shape: torch.Size) -> Tensor:
    """(B, ...) broadcast to `shape` and flattened to rows (B, n); free when already so (the kernel
    driver makes its inputs contiguous)."""
    if t.shape != shape:
        t = t.expand(shape)
    if t.dim() != 2:
        t = t.reshape(shape[0], math.prod(shape[1:]))
    return t


def _from_rows(g: Tensor, shape: torch.Size, like: Tensor) -> Tensor:
    """Rows back to `shape`, summed down to the shape of a broadcast input."""
    if g.shape != shape:
        g = g.view(shape)
    return g if like.shape == shape else g.sum_to_size(like.shape)


_SECOND_ORDER = _second_order.SecondOrderSpec.of("affine_coupling", num_outputs=2, num_primals=3)


class _AffineCoupling(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, shift, scale, mode, clamp, inverse):
        shape = _broadcast_shape(x, shift, scale)
        y, logabsdet = torch.ops.mfkernels.affine_coupling_forward(
            _as_rows(x, shape), _as_rows(shift, shape), _as_rows(scale, shape), mode, clamp, inverse
        )
        return (y if y.shape == shape else y.view(shape)), logabsdet

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, shift, scale, mode, clamp, inverse = inputs
        ctx.options = (mode, clamp, inverse)
        ctx.save_for_backward(x, shift, scale)
        ctx.save_for_forward(x, shift, scale)

    @staticmethod
    def backward(ctx, grad_y, grad_logabsdet):
        x, shift, scale = ctx.saved_tensors
        shape = grad_y.shape
        grads = _second_order.backward(
            _SECOND_ORDER, ctx.options, _as_rows(grad_y, shape), grad_logabsdet.contiguous(), _as_rows(x, shape),
            _as_rows(shift, shape), _as_rows(scale, shape),
        )
        # Inputs that were broadcast receive the sum of their copies' gradients.
        return (*(_from_rows(g, shape, t) for g, t in zip(grads, (x, shift, scale))), None, None, None)

    @staticmethod
    def jvp(ctx, x_dot, shift_dot, scale_dot, *_):
        x, shift, scale = ctx.saved_tensors
        shape = _broadcast_shape(x, shift, scale)
        tangents = zero_tangents((x_dot, x), (shift_dot, shift), (scale_dot, scale))
        y_dot, logabsdet_dot = _second_order.jvp(
            _SECOND_ORDER, ctx.options, *(_as_rows(t, shape) for t in (x, shift, scale)),
            *(_as_rows(t, shape) for t in tangents),
        )
        return y_dot.view(shape), logabsdet_dot


_apply = tangent_aware_apply(_AffineCoupling)


@float32_under_autocast
def affine_coupling(
    x: Tensor, shift: Tensor, scale: Tensor, *, mode: str = "exp", clamp: float | None = None,
    inverse: bool = False,
) -> tuple[Tensor, Tensor]:
    """Affine coupling transform of x with per-element shift t and log-scale parameter s.

    x, shift and scale broadcast to one shape (B, ...); returns (y, logabsdet) with y of that shape
    and logabsdet of shape (B,), summed over all non-batch dims. `inverse=True` computes the exact
    inverse (its logabsdet is minus the forward one). Differentiable in reverse and forward mode,
    vmap-able, traceable by torch.compile.

    Modes: "exp" (a = s), "softclamp" (a = clamp * tanh(s / clamp), needs clamp > 0), "sigmoid"
    (a = log sigmoid(s + 2), Glow's scale, here applied as y = x * scale + t), "volume_preserving"
    (a = s - mean(s) per sample, logabsdet exactly 0).

    NaN policy: values are not checked (a check would cost a device sync); NaN propagates. A NaN
    in x or shift reaches only its own element of y; a NaN in scale also reaches its sample's
    logabsdet, except in volume_preserving mode, where the logabsdet is 0 by construction and the
    NaN reaches every element of that sample through the row mean instead.
    """
    for name, t in (("x", x), ("shift", shift), ("scale", scale)):
        check_tensor(_OP, name, t, min_dim=1)
        check_same_dtype_device(_OP, "x", x, name, t)
    try:
        shape = _broadcast_shape(x, shift, scale)
    except RuntimeError:
        raise ValueError(
            f"{_OP}: arguments 'x' {tuple(x.shape)}, 'shift' {tuple(shift.shape)} and 'scale' "
            f"{tuple(scale.shape)} do not broadcast to one shape (B, ...)"
        ) from None
    if len(shape) > x.dim():
        raise ValueError(f"{_OP}: 'shift'/'scale' may not add dimensions to 'x' {tuple(x.shape)}, got {tuple(shape)}")
    if mode not in MODES:
        raise ValueError(f"{_OP}: argument 'mode' must be one of {MODES}, got {mode!r}")
    if mode == "softclamp" and not (isinstance(clamp, (int, float)) and 0 < clamp < math.inf):
        raise ValueError(f"{_OP}: argument 'clamp' must be a positive finite float with mode='softclamp', "
                         f"got {clamp!r}")
    return _apply(x, shift, scale, mode, None if clamp is None else float(clamp), bool(inverse))


for _name in ("affine_coupling_forward", "affine_coupling_backward", "affine_coupling_jvp",
              "affine_coupling_backward_jvp"):
    register_row_vmap(f"mfkernels::{_name}")


def _bench_inputs(shape, dtype, device, generator):
    x, shift, scale = (torch.randn(*shape, dtype=dtype, generator=generator) for _ in range(3))
    return tuple(t.mul_(0.5).to(device).requires_grad_() for t in (x, shift, scale))


register(
    OpSpec(
        name="affine_coupling",
        op=affine_coupling,
        reference=reference.affine_coupling,
        make_inputs=_bench_inputs,
        bench_shapes=[(4096, 1024), (256, 64), (64, 3, 32, 32)],
        gpu_bench_shapes=[(65536, 1024), (4096, 1024)],
        shape_names="(B, D...)",
        primitives=("affine_coupling_forward", "affine_coupling_backward", "affine_coupling_jvp",
                    "affine_coupling_backward_jvp"),
        second_order=True,
    )
)
