"""Mixed precision: every mfkernels op computes in float32 (or float64) and returns that precision,
also under torch.autocast. Inside an autocast region a model's conditioners produce float16/bfloat16
tensors; the ops' log-determinants, Cholesky factors and spline bin searches lose most of their
digits in 8-bit-mantissa arithmetic, so (like torch's own autocast policy for log_softmax, cholesky or
linalg ops) they run in float32: half-precision inputs are cast up and autocast is switched off
inside the op, so the op's own matmuls do not drop back to low precision."""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, TypeVar

import torch
from torch import Tensor

F = TypeVar("F", bound=Callable)
_LOW = (torch.float16, torch.bfloat16)


def _up(value):
    return value.float() if isinstance(value, Tensor) and value.dtype in _LOW else value


def float32_under_autocast(fn: F) -> F:
    """Decorates a public op: unchanged outside autocast; inside, half-precision tensor arguments are
    cast to float32 and the op runs with autocast disabled for their device types."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
        active = {t.device.type for t in tensors if torch.is_autocast_enabled(t.device.type)}
        if not active:
            return fn(*args, **kwargs)
        with contextlib.ExitStack() as stack:
            for device_type in sorted(active):
                stack.enter_context(torch.autocast(device_type, enabled=False))
            return fn(*(_up(a) for a in args), **{k: _up(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]


def register_autocast_kernels(op_names: list[str], device_types: tuple[str, ...] = ("cpu", "cuda")) -> None:
    """Autocast kernels for the compiled primitives (`torch.ops.mfkernels.*`, for callers that bypass
    the Python API, e.g. C++ or a traced graph): half-precision inputs are cast to float32 there too;
    float64 inputs are left as they are."""
    register = getattr(torch.library, "register_autocast", None)
    if register is None:  # older torch: the Python API's decorator still applies
        return
    for name in op_names:
        for device_type in device_types:
            register(name if "::" in name else f"mfkernels::{name}", device_type, torch.float32)
