"""vmap rules for the compiled ops, so torch.func.vmap calls each op once instead of falling back
to a slow per-sample loop.

Two layouts cover the ops:
- leading-batch ops (e.g. gram_logdet) treat every leading dimension as a batch dimension, so
  moving the vmapped dimension of each argument to the front is already exact;
- row ops (e.g. affine_coupling) take rows (B, n) and per-row values (B,); the vmapped dimension
  V is moved to the front and merged with B into V * B rows, and split off again afterwards.
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


def register_row_vmap(qualname: str) -> None:
    """Registers the merge-into-rows rule for op `qualname`, whose tensors are (B, n) or (B,)."""

    namespace, name = qualname.split("::")
    op = getattr(getattr(torch.ops, namespace), name)

    def rule(info, in_dims, *args):
        V = info.batch_size
        moved = [_to_front(a, d, V) for a, d in zip(args, in_dims)]
        rows = next(a for a in moved if isinstance(a, torch.Tensor) and a.dim() == 3).shape[1]
        flat = [a.reshape(V * rows, *a.shape[2:]) if isinstance(a, torch.Tensor) else a for a in moved]
        out = op(*flat)
        out = tuple(o.reshape(V, rows, *o.shape[1:]) for o in out)
        return out, tuple(0 for _ in out)

    torch.library.register_vmap(qualname, rule)


def register_loop_vmap(qualname: str, fast_rule=None) -> None:
    """Registers a rule for ops whose vmapped arguments cannot be merged into one call in general
    (e.g. a vmapped shared matrix): `fast_rule(info, in_dims, *args)` may return (out, out_dims)
    for the cases it handles, or None; otherwise the op runs once per vmapped slice and the results
    are stacked (an explicit loop, without torch's per-sample fallback warning)."""

    namespace, name = qualname.split("::")
    op = getattr(getattr(torch.ops, namespace), name)

    def rule(info, in_dims, *args):
        if fast_rule is not None:
            result = fast_rule(info, in_dims, *args)
            if result is not None:
                return result
        moved = [_to_front(a, d, info.batch_size) for a, d in zip(args, in_dims)]
        outs = [op(*(a[i] if isinstance(a, torch.Tensor) else a for a in moved)) for i in range(info.batch_size)]
        if isinstance(outs[0], tuple):
            stacked = tuple(torch.stack(parts) for parts in zip(*outs))
            return stacked, tuple(0 for _ in stacked)
        return torch.stack(outs), 0

    torch.library.register_vmap(qualname, rule)


def merged_rows_rule(qualname: str, row_args: int, shared_outputs: tuple[int, ...] = ()):
    """A `fast_rule` for register_loop_vmap: when only the first `row_args` arguments (rows (N, ...))
    are vmapped, merge the vmapped dim into the rows, call the op once, and split the row outputs
    again; outputs listed in `shared_outputs` (e.g. a factorisation of the shared matrix) stay unbatched."""

    namespace, name = qualname.split("::")
    op = getattr(getattr(torch.ops, namespace), name)

    def rule(info, in_dims, *args):
        if any(d is not None for d in in_dims[row_args:]):
            return None
        V = info.batch_size
        rows = [_to_front(a, d, V) for a, d in zip(args[:row_args], in_dims[:row_args])]
        N = rows[0].shape[1]
        out = op(*(r.reshape(V * N, *r.shape[2:]) for r in rows), *args[row_args:])
        out = out if isinstance(out, tuple) else (out,)
        split = tuple(o if i in shared_outputs else o.reshape(V, N, *o.shape[1:]) for i, o in enumerate(out))
        dims = tuple(None if i in shared_outputs else 0 for i in range(len(out)))
        return (split, dims) if len(out) > 1 else (split[0], dims[0])

    return rule
