"""Applying an op's autograd.Function so that eager jvp/vmap and torch.compile all work.

Dynamo refuses to trace an autograd.Function that defines a custom `jvp` when its inputs require
grad (torch 2.13: "Unsupported custom jvp"), yet forward-mode AD needs that `jvp` in eager mode.
Compiled graphs never run forward-mode AD, so under torch.compile the same Function minus its
`jvp` is used; everything else (forward, backward, vmap rule) is shared.
"""

from __future__ import annotations

from typing import Callable

import torch


def tangent_aware_apply(fn_cls: type[torch.autograd.Function]) -> Callable:
    """Returns apply(*args): fn_cls.apply in eager mode, a jvp-less copy while compiling."""
    without_jvp = type(
        fn_cls.__name__ + "WithoutJvp",
        (fn_cls,),
        {"jvp": staticmethod(torch.autograd.Function.jvp), "__module__": fn_cls.__module__},
    )

    def apply(*args):
        cls = without_jvp if torch.compiler.is_compiling() else fn_cls
        return cls.apply(*args)

    return apply
