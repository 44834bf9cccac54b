"""`mfkernels bench --profile`: where an op's forward + backward time goes on this machine.

For each op and its first benchmark shape: the whole Python call (forward, the sum of the outputs,
backward, as `mfkernels bench` times it); the compiled kernels alone (every `torch.ops.mfkernels.*`
call that the whole call reaches, recorded once with its arguments and then timed by itself); the
allocation and first touch of the bytes those kernels return (`torch.empty(...).fill_()` of the same
sizes: the page-fault cost a fresh output pays where the allocator hands memory back to the system);
and a copy of the op's fewest bytes (`mfkernels bench`'s roofline lower bound). What the whole call
spends beyond the kernels is autograd, Python and the ATen ops around the kernels.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .. import cpu_memory
from ..ops import all_ops, get_op
from .ops import DTYPES, _copy_seconds, _median_seconds, _nbytes, _total


class KernelRecorder(TorchDispatchMode):
    """Records each mfkernels kernel reached (its OpOverload and its arguments, detached but in their
    layout: an expanded gradient stays expanded), once."""

    def __init__(self):
        super().__init__()
        self.calls = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "mfkernels" and func not in self.calls:
            keep = lambda v: v.detach() if isinstance(v, torch.Tensor) else v  # noqa: E731
            self.calls[func] = (tuple(keep(a) for a in args), {k: keep(v) for k, v in kwargs.items()})
        return func(*args, **kwargs)


def _whole_call(fn, inputs):
    def run():
        torch.autograd.grad(_total(fn(*inputs)), inputs)

    return run


def _outputs_bytes(func, args, kwargs) -> list[int]:
    with torch.no_grad():
        out = func(*args, **kwargs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.numel() * o.element_size() for o in outs if isinstance(o, torch.Tensor)]


def profile_op(name: str, dtype: str = "float32", min_run_time: float = 0.5, seed: int = 0) -> dict:
    spec = get_op(name)
    shape = spec.bench_shapes[0]
    inputs = spec.make_inputs(shape, DTYPES[dtype], "cpu", torch.Generator().manual_seed(seed))
    inputs = tuple(t.requires_grad_(t.is_floating_point()) for t in inputs)
    recorder = KernelRecorder()
    with recorder:
        _whole_call(spec.op, inputs)()
    kernels = {}
    output_bytes = []
    for func, (args, kwargs) in recorder.calls.items():
        with torch.no_grad():
            kernels[str(func)] = 1e3 * _median_seconds(lambda f=func, a=args, k=kwargs: f(*a, **k), min_run_time)
        output_bytes += _outputs_bytes(func, args, kwargs)
    touch = lambda: [torch.empty(b // 4, dtype=torch.float32).fill_(0) for b in output_bytes]  # noqa: E731
    with torch.no_grad():
        out = spec.op(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    fewest_bytes = 3 * _nbytes(inputs) + 2 * _nbytes(outs)
    row = {
        "op": name,
        "shape": list(shape),
        "whole_call_ms": 1e3 * _median_seconds(_whole_call(spec.op, inputs), min_run_time),
        "twin_whole_call_ms": 1e3 * _median_seconds(_whole_call(spec.reference, inputs), min_run_time),
        "kernels_ms": kernels,
        "kernels_total_ms": sum(kernels.values()),
        "kernel_output_mb": sum(output_bytes) / 1e6,
        "alloc_touch_outputs_ms": 1e3 * _median_seconds(touch, min_run_time),
        "fewest_mb": fewest_bytes / 1e6,
        "copy_fewest_ms": 1e3 * _copy_seconds(fewest_bytes, "cpu", min_run_time),
    }
    row["outside_kernels_ms"] = row["whole_call_ms"] - row["kernels_total_ms"]
    return row


def run(ops=None, dtype: str = "float32", quick: bool = False, seed: int = 0) -> dict:
    names = ops or list(all_ops())
    rows = [profile_op(name, dtype, 0.1 if quick else 0.5, seed) for name in names]
    return {"threads": torch.get_num_threads(), "cpu_freed_memory_retained": cpu_memory.freed_memory_retained(),
            "dtype": dtype, "rows": rows}


def format_table(report: dict) -> str:
    lines = [
        f"where forward + backward goes ({report['dtype']}, {report['threads']} threads"
        f"{', freed memory retained' if report['cpu_freed_memory_retained'] else ''}); ms, medians",
        "",
        f"{'op':<26} {'shape':<18} {'whole':>7} {'twin':>7} {'kernels':>8} {'outside':>8} {'out MB':>7}"
        f" {'alloc+touch':>11} {'copy fewest':>11}",
    ]
    lines.append("-" * len(lines[-1]))
    for r in report["rows"]:
        lines.append(
            f"{r['op']:<26} {str(tuple(r['shape'])):<18} {r['whole_call_ms']:>7.2f} {r['twin_whole_call_ms']:>7.2f}"
            f" {r['kernels_total_ms']:>8.2f} {r['outside_kernels_ms']:>8.2f} {r['kernel_output_mb']:>7.1f}"
            f" {r['alloc_touch_outputs_ms']:>11.2f} {r['copy_fewest_ms']:>11.2f}"
        )
        for kernel, ms in r["kernels_ms"].items():
            lines.append(f"    {kernel:<60} {ms:>8.2f}")
    return "\n".join(lines)
