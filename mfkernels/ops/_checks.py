"""Input validation shared by all ops: errors name the argument and say what was expected."""

from __future__ import annotations

import torch
from torch import Tensor

FLOATING = (torch.float32, torch.float64)


def check_tensor(op: str, name: str, value: object, *, min_dim: int = 0) -> Tensor:
    """A float32/float64 tensor with at least `min_dim` dimensions, or a TypeError/ValueError."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{op}: argument '{name}' must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in FLOATING:
        raise TypeError(
            f"{op}: argument '{name}' must be float32 or float64, got {value.dtype}; "
            f"convert with {name}.double() or {name}.float()"
        )
    if value.dim() < min_dim:
        raise ValueError(
            f"{op}: argument '{name}' must have at least {min_dim} dimensions, "
            f"got shape {tuple(value.shape)}"
        )
    return value


def check_same_dtype_device(op: str, ref_name: str, ref: Tensor, name: str, value: Tensor) -> None:
    """`value` shares `ref`'s dtype and device, or a TypeError naming both arguments."""
    if value.dtype != ref.dtype or value.device != ref.device:
        raise TypeError(
            f"{op}: argument '{name}' has dtype {value.dtype} on {value.device} but '{ref_name}' has {ref.dtype} on "
            f"{ref.device}; all tensors must share dtype and device"
        )


def check_unit_interval(op: str, name: str, value: float | None) -> None:
    """None, or a float in [0, 1)."""
    if value is None:
        return
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{op}: argument '{name}' must be None or a float in [0, 1), got {value!r}")


def cannot_read_values() -> bool:
    """True where tensor values cannot be read back (torch.compile tracing, torch.func transforms):
    value checks are skipped there and the op's NaN policy applies instead."""
    return torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active()
