"""vmap rules for compiled ops that treat every leading dimension as a batch dimension.

Such an op already is its own batching rule: moving the vmapped dimension of each tensor argument to
the front (materialising it where an argument is not vmapped) and calling the op once is exact.
Without a registered rule, torch.func.vmap falls back to a slow per-sample loop.
"""

from __future__ import annotations

import torch


def _to_front(value, dim, batch_size):
    if not isinstance(value, torch.Tensor):
        return value
    if dim is None:
        return value.unsqueeze(0).expand(batch_size, *value.shape)
    return value.movedim(dim, 0)


def register_leading_batch_vmap(qualname: str) -> None:
    """Registers the move-to-front rule for op `qualname` ("mfkernels::name")."""

    namespace, name = qualname.split("::")
    op = getattr(getattr(torch.ops, namespace), name)

    def rule(info, in_dims, *args):
        args = tuple(_to_front(a, d, info.batch_size) for a, d in zip(args, in_dims))
        out = op(*args)
        out_dims = tuple(0 for _ in out) if isinstance(out, tuple) else 0
        return out, out_dims

    torch.library.register_vmap(qualname, rule)
