"""Applying an op's autograd.Function so that eager jvp/vmap and torch.compile all work.

Dynamo refuses to trace an autograd.Function that defines a custom `jvp` when its inputs require
grad (torch 2.13: "Unsupported custom jvp"), yet forward-mode AD needs that `jvp` in eager mode.
Compiled graphs never run forward-mode AD, so under torch.compile the same Function minus its
`jvp` is used; everything else (forward, backward, vmap rule) is shared.

In plain eager mode `Function.apply` binds default arguments with `inspect.signature` on every call,
which costs more than a small coupling layer's whole kernel. Our callers always pass every
argument positionally, so there the C++ apply is called directly (after the same dead-wrapper
unwrapping torch does); under functorch transforms the public path is kept.

This module is the one place that reaches into torch internals for that shortcut. With the
environment variable MFKERNELS_PUBLIC_APPLY=1 (read at import) every call takes the public
`Function.apply`, as it also does when a torch release moves those internals; CI runs the op tests
once that way, so the fallback is a tested path, not a hope.
"""

from __future__ import annotations

import os
from typing import Callable

import torch

PUBLIC_APPLY_VARIABLE = "MFKERNELS_PUBLIC_APPLY"


def _public_apply_forced() -> bool:
    value = os.environ.get(PUBLIC_APPLY_VARIABLE, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"environment variable {PUBLIC_APPLY_VARIABLE} must be 1/true/yes/on or 0/false/no/off "
                     f"(or unset), got {value!r}")


def _direct_apply_available() -> bool:
    if _public_apply_forced():
        return False
    try:  # torch internals behind Function.apply; without them every call takes the public path
        from torch._functorch.utils import unwrap_dead_wrappers  # noqa: F401
        from torch.autograd.function import _SingleLevelFunction  # noqa: F401
    except ImportError:
        return False
    return True


_HAVE_DIRECT_APPLY = _direct_apply_available()
if _HAVE_DIRECT_APPLY:
    from torch._functorch.utils import unwrap_dead_wrappers as _unwrap_dead_wrappers
    from torch.autograd.function import _SingleLevelFunction


def uses_direct_apply() -> bool:
    """Whether eager calls skip `Function.apply`'s argument binding (False under MFKERNELS_PUBLIC_APPLY=1)."""
    return _HAVE_DIRECT_APPLY


def zero_tangents(*pairs: tuple[torch.Tensor | None, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Forward mode hands a Function's `jvp` None for inputs without a tangent; the compiled jvp
    kernels want tensors. Each (tangent, like) pair gives the tangent, or zeros shaped like `like`."""
    return tuple(torch.zeros_like(like) if dot is None else dot for dot, like in pairs)


def tangent_aware_apply(fn_cls: type[torch.autograd.Function]) -> Callable:
    """Returns apply(*args): fn_cls.apply in eager mode, a jvp-less copy while compiling."""
    without_jvp = type(
        fn_cls.__name__ + "WithoutJvp",
        (fn_cls,),
        {"jvp": staticmethod(torch.autograd.Function.jvp), "__module__": fn_cls.__module__},
    )

    def apply(*args):
        if torch.compiler.is_compiling():
            return without_jvp.apply(*args)
        if _HAVE_DIRECT_APPLY and not torch._C._are_functorch_transforms_active():
            return super(_SingleLevelFunction, fn_cls).apply(*_unwrap_dead_wrappers(args))
        return fn_cls.apply(*args)

    return apply


def _forward_ad_active() -> bool:
    return getattr(torch.autograd.forward_ad, "_current_level", -1) >= 0


class _FirstOrderOnly(torch.autograd.Function):
    """Runs a compiled backward or tangent primitive whose results are first derivatives. Those
    primitives have no derivative formulas of their own: differentiated again, the dispatcher's
    fallback would treat them as constants and give zero second derivatives without a word. Here
    that raises instead (double backward, hessian, reverse mode through a tangent, jacfwd of jacfwd).
    The op's own inputs come along as anchors: a primitive may see them only through values the
    forward saved (which carry no graph), and the result must still lead back to them."""

    generate_vmap_rule = True

    @staticmethod
    def forward(message, primitive, num_args, *args_and_anchors):
        return primitive(*args_and_anchors[:num_args])

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.message = inputs[0]

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(ctx.message)

    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError(ctx.message)


def input_anchors(inputs) -> tuple[torch.Tensor, ...]:
    """The tensors among an op's inputs, kept on the autograd context for derivative_kernel."""
    return tuple(t for t in inputs if isinstance(t, torch.Tensor))


def derivative_kernel(op: str, anchors: tuple[torch.Tensor, ...], primitive: Callable, *args):
    """primitive(*args) for an op's backward or jvp; `anchors` are the op's inputs (input_anchors).
    When the result could itself be differentiated (grad mode on during backward, functorch
    transforms, forward AD), through _FirstOrderOnly so that a second derivative is a clear error
    naming the op, never a silent zero."""
    if torch.compiler.is_compiling() or not (
        torch.is_grad_enabled() or torch._C._are_functorch_transforms_active() or _forward_ad_active()
    ):
        return primitive(*args)
    message = (f"{op}: second derivatives are not implemented (double backward, torch.func.hessian, "
               f"reverse mode through its forward-mode tangent, or jacfwd of jacfwd); the op is "
               f"differentiable once, in reverse or forward mode")
    return _FirstOrderOnly.apply(message, primitive, len(args), *args, *anchors)
