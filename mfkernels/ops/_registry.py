"""The op registry: every public op with its reference twin and benchmark shapes.

`mfkernels bench`, `benchmarks/` and the coverage tests iterate over it, so adding an op means one
`register(OpSpec(...))` call next to the op's definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch


@dataclass(frozen=True)
class OpSpec:
    """An op, its twin, and how to make benchmark inputs for it.

    make_inputs(shape, dtype, device, generator) returns the positional tensor arguments shared
    by op and twin; benchmarks differentiate the sum of the output with respect to all of them.
    """

    name: str
    op: Callable[..., torch.Tensor]
    reference: Callable[..., torch.Tensor]
    make_inputs: Callable[..., tuple[torch.Tensor, ...]]
    bench_shapes: Sequence[tuple[int, ...]]
    shape_names: str
    # Shapes that fill a GPU (the GPU speed targets' sizes); `mfkernels bench --device cuda` uses
    # these, falling back to bench_shapes when empty.
    gpu_bench_shapes: Sequence[tuple[int, ...]] = field(default_factory=tuple)
    # torch.ops.mfkernels entries that implement this op (forward/backward/tangent kernels).
    primitives: Sequence[str] = field(default_factory=tuple)
    # Other implementations to time against, by name: factories returning the callable (same
    # arguments as `op`), or None when the library providing it is not installed.
    baselines: dict[str, Callable[[], Callable | None]] = field(default_factory=dict)
    # Twice differentiable (double backward, hessian, reverse mode through the jvp; ops/_second_order.py);
    # the other ops raise a clear error at the second derivative.
    second_order: bool = False


_REGISTRY: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"op '{spec.name}' is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def all_ops() -> dict[str, OpSpec]:
    """Registered ops by name, in registration order."""
    return dict(_REGISTRY)


def get_op(name: str) -> OpSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op '{name}'; known ops: {', '.join(_REGISTRY)}") from None
