"""Second derivatives of the elementwise ops (affine_coupling, rq_spline): reverse mode through their
forward-mode tangents, double backward, and forward mode through their backward.

An op f(p) with compiled primitives

    backward(g, p)            = Jᵀ g                                  (reverse, first order)
    jvp(p, ṗ)                 = J ṗ                                   (forward, first order)
    backward_jvp(g, p, ġ, ṗ)  = d/dε backward(g + ε ġ, p + ε ṗ)       (the backward kernel in dual numbers)

is made twice differentiable by two autograd Functions whose derivatives are those same primitives
(the symmetry of second derivatives turns each vector-Hessian product into a tangent of the backward):

    reverse mode of jvp:       ∂(hᵀ J ṗ)/∂ṗ = backward(h, p)           ∂(hᵀ J ṗ)/∂p = backward_jvp(h, p, 0, ṗ)
    reverse mode of backward:  ∂(kᵀ Jᵀ g)/∂g = jvp(p, k)               ∂(kᵀ Jᵀ g)/∂p = backward_jvp(g, p, 0, k)
    forward mode of backward:  backward_jvp(g, p, ġ, ṗ)

This is what makes ½ log det(JᵀJ) of a generator (computed from forward-mode tangents) trainable by
gradient descent (rectangular flows, Caterini et al. 2021). Third derivatives, and forward mode
through the jvp (jacfwd of jacfwd), raise a clear error instead of returning zeros.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ._autograd import _forward_ad_active, derivative_kernel, zero_tangents


@dataclasses.dataclass(frozen=True)
class SecondOrderSpec:
    """The primitives of one op. `num_outputs` of the op (gradients g), `num_primals` differentiable inputs p;
    every primitive takes its tensors first, then the op's options."""

    op: str
    backward: Callable
    jvp: Callable
    backward_jvp: Callable
    num_outputs: int
    num_primals: int

    @classmethod
    def of(cls, name: str, num_outputs: int, num_primals: int) -> "SecondOrderSpec":
        """The spec of op `name` from its registered primitives torch.ops.mfkernels.<name>_backward, _jvp
        and _backward_jvp."""
        lib = torch.ops.mfkernels
        return cls(f"mfkernels.ops.{name}", getattr(lib, f"{name}_backward"), getattr(lib, f"{name}_jvp"),
                   getattr(lib, f"{name}_backward_jvp"), num_outputs, num_primals)


@dataclasses.dataclass(frozen=True)
class _Call:
    """An op's primitives with its options, one opaque (non-pytree) Function argument: functorch
    flattens tuple arguments, which would misalign the tangents handed to `jvp`."""

    spec: SecondOrderSpec
    options: tuple
    which: str  # the primitive: "backward" or "jvp"


def _differentiable_context() -> bool:
    """Whether a primitive's result could itself be differentiated (else the plain primitive is enough)."""
    return torch.is_grad_enabled() or torch._C._are_functorch_transforms_active() or _forward_ad_active()


def _backward_jvp(spec: SecondOrderSpec, options: tuple, *args):
    """backward_jvp, first order only: differentiating it (a third derivative) raises."""
    anchors = tuple(a for a in args if isinstance(a, torch.Tensor))
    return derivative_kernel(f"{spec.op} (second derivative)", anchors, spec.backward_jvp, *args, *options)


class _Primitive(torch.autograd.Function):
    """One primitive of an op (`call.which`: "backward" or "jvp") as a function of its tensors; the
    subclasses give its derivatives."""

    generate_vmap_rule = True

    @staticmethod
    def forward(call, *tensors):
        return getattr(call.spec, call.which)(*tensors, *call.options)

    @staticmethod
    def setup_context(ctx, inputs, output):
        call, *tensors = inputs
        ctx.spec, ctx.options = call.spec, call.options
        ctx.save_for_backward(*tensors)
        ctx.save_for_forward(*tensors)  # functorch's vmap rule expects saved tensors even where jvp raises
        ctx.output_shapes = tuple(o.shape for o in output)


class _Backward(_Primitive):
    """backward(g, p) = Jᵀg as a differentiable function of g and p."""

    @staticmethod
    def backward(ctx, *k):
        spec, saved = ctx.spec, ctx.saved_tensors
        g, p = saved[: spec.num_outputs], saved[spec.num_outputs:]
        k = zero_tangents(*zip(k, p))
        grad_g = jvp(spec, ctx.options, *p, *k)
        grad_p = _backward_jvp(spec, ctx.options, *g, *p, *(torch.zeros_like(t) for t in g), *k)
        return (None, *grad_g, *grad_p)

    @staticmethod
    def jvp(ctx, _call, *dots):
        spec, saved = ctx.spec, ctx.saved_tensors
        return _backward_jvp(spec, ctx.options, *saved, *zero_tangents(*zip(dots, saved)))


class _Jvp(_Primitive):
    """jvp(p, ṗ) = J ṗ as a differentiable function of p and ṗ (reverse mode only)."""

    @staticmethod
    def backward(ctx, *h):
        spec, saved = ctx.spec, ctx.saved_tensors
        p, p_dot = saved[: spec.num_primals], saved[spec.num_primals:]
        # None for an output that did not reach the loss
        h = tuple(p[0].new_zeros(shape) if t is None else t for t, shape in zip(h, ctx.output_shapes))
        grad_p_dot = backward(spec, ctx.options, *h, *p)
        grad_p = _backward_jvp(spec, ctx.options, *h, *p, *(torch.zeros_like(t) for t in h), *p_dot)
        return (None, *grad_p, *grad_p_dot)

    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError(f"{ctx.spec.op}: forward mode through its forward-mode tangent (jacfwd of jacfwd) is not "
                           f"implemented; use reverse mode over forward (jacrev of jacfwd) or torch.func.hessian")


def backward(spec: SecondOrderSpec, options: tuple, *g_and_p):
    """The op's backward primitive, differentiable (once more) when that could be asked for."""
    if torch.compiler.is_compiling() or not _differentiable_context():
        return spec.backward(*g_and_p, *options)
    return _Backward.apply(_Call(spec, options, "backward"), *g_and_p)


def jvp(spec: SecondOrderSpec, options: tuple, *p_and_dots):
    """The op's jvp primitive, differentiable in reverse mode when that could be asked for."""
    if torch.compiler.is_compiling() or not _differentiable_context():
        return spec.jvp(*p_and_dots, *options)
    return _Jvp.apply(_Call(spec, options, "jvp"), *p_and_dots)
