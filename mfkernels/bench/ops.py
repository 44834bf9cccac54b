"""`mfkernels bench`: every registered op against its pure-torch twin, in the same process.

For each op and benchmark shape it times the forward pass (under no_grad) and forward + backward
(gradient of the sum of all outputs with respect to every input) of the op and of the twin, takes the
median over repeats after a warm-up (torch.utils.benchmark, which synchronises CUDA), and reports
twin time / op time as the speed-up. Results go to a table and, optionally, a JSON file.

Roofline columns: for each row the fewest bytes the op must move (forward: read the inputs, write
the outputs; forward + backward: that, plus read the output gradients, read the inputs again and
write the input gradients; intermediates the op saves are not counted, so this is a lower bound),
the GB/s the op achieves on those bytes, and the GB/s of a plain tensor copy moving as many bytes in
the same run (`copy_fraction` = op GB/s / copy GB/s: 1.0 means the op runs at the memory limit).
On a GPU the rows use the ops' `gpu_bench_shapes` (sizes that fill the chip).
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Sequence

import torch
from torch.utils.benchmark import Timer
from tqdm import tqdm

from .. import _extension, cpu_memory
from .._version import __version__
from ..cli import info
from ..ops import all_ops, get_op

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _median_seconds(fn, min_run_time: float) -> float:
    fn()
    fn()
    # torch.utils.benchmark synchronises CUDA around each timed block, never inside it
    # Timer defaults to one thread; time with the threads torch (and the user) would use
    return (
        Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        .blocked_autorange(min_run_time=min_run_time)
        .median
    )


def _forward(fn, inputs):
    def run():
        with torch.no_grad():
            fn(*inputs)

    return run


def _total(out) -> torch.Tensor:
    """A scalar depending on every output (ops may return a tensor or a tuple of tensors)."""
    outs = out if isinstance(out, tuple) else (out,)
    return sum(o.sum() for o in outs)


def forward_backward(fn, inputs):
    """A zero-argument callable: fn(*inputs), then the gradients of all its outputs' sum w.r.t. the
    inputs that require grad (a benchmark shape may leave some out, e.g. data x in a likelihood)."""
    wrt = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]

    def run():
        torch.autograd.grad(_total(fn(*inputs)), wrt)

    return run


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _copy_seconds(nbytes: int, device: str, min_run_time: float) -> float:
    """Median time of dst.copy_(src) for nbytes / 2 bytes (so the copy reads and writes nbytes)."""
    n = max(nbytes // 8, 1)
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return _median_seconds(lambda: dst.copy_(src), min_run_time)


def roofline(fn, inputs, op_fwd_ms: float, op_fwd_bwd_ms: float, device: str, min_run_time: float) -> dict:
    """Bytes the op must move (see the module docstring), achieved GB/s, and a same-size copy's GB/s."""
    with torch.no_grad():
        out = fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    read, written = _nbytes(inputs), _nbytes(outs)
    fwd = read + written
    fwd_bwd = 3 * read + 2 * written
    copy_gbs = fwd_bwd / _copy_seconds(fwd_bwd, device, min_run_time) / 1e9
    fwd_gbs, fwd_bwd_gbs = fwd / op_fwd_ms / 1e6, fwd_bwd / op_fwd_bwd_ms / 1e6
    return {"fwd_bytes": fwd, "fwd_bwd_bytes": fwd_bwd, "op_fwd_gbs": fwd_gbs, "op_fwd_bwd_gbs": fwd_bwd_gbs,
            "copy_gbs": copy_gbs, "copy_fraction_fwd_bwd": fwd_bwd_gbs / copy_gbs}


def run(
    ops: Sequence[str] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, object]:
    """Times every (op, shape) pair; returns a JSON-ready report."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("bench: --device cuda requested but torch sees no CUDA device")
    if device.startswith("cuda") and not _extension.build_info()["cuda_built"]:
        raise ValueError("bench: --device cuda requested but mfkernels was built without CUDA kernels")
    if dtype not in DTYPES:
        raise ValueError(f"bench: --dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    specs = [get_op(name) for name in ops] if ops else list(all_ops().values())
    on_gpu = device.startswith("cuda")
    # GPU kernels take micro- to milliseconds: 0.2 s of blocks gives a stable median
    min_run_time = 0.05 if quick else (0.2 if on_gpu else 0.5)
    jobs = [(spec, shape) for spec in specs
            for shape in ((spec.gpu_bench_shapes or spec.bench_shapes) if on_gpu else spec.bench_shapes)]
    rows = []
    generator = torch.Generator().manual_seed(seed)
    for spec, shape in tqdm(jobs, desc="bench", disable=not progress or None, leave=False):
        inputs = spec.make_inputs(shape, DTYPES[dtype], device, generator)
        row = {"op": spec.name, "shape": list(shape), "shape_names": spec.shape_names}
        for impl, fn in (("op", spec.op), ("twin", spec.reference)):
            row[f"{impl}_fwd_ms"] = 1e3 * _median_seconds(_forward(fn, inputs), min_run_time)
            row[f"{impl}_fwd_bwd_ms"] = 1e3 * _median_seconds(forward_backward(fn, inputs), min_run_time)
        row["speedup_fwd"] = row["twin_fwd_ms"] / row["op_fwd_ms"]
        row["speedup_fwd_bwd"] = row["twin_fwd_bwd_ms"] / row["op_fwd_bwd_ms"]
        row.update(roofline(spec.op, inputs, row["op_fwd_ms"], row["op_fwd_bwd_ms"], device, min_run_time))
        # Other libraries' implementations of the same op (e.g. nflows), when installed.
        for name, factory in spec.baselines.items():
            fn = factory()
            if fn is None:
                continue
            try:
                row[f"{name}_fwd_ms"] = 1e3 * _median_seconds(_forward(fn, inputs), min_run_time)
                row[f"{name}_fwd_bwd_ms"] = 1e3 * _median_seconds(forward_backward(fn, inputs), min_run_time)
            except torch.OutOfMemoryError:  # a dense baseline at a GPU size: say so, keep the row
                row[f"{name}_skipped"] = "out of memory"
                row.pop(f"{name}_fwd_ms", None)
                torch.cuda.empty_cache()
                continue
            row[f"speedup_fwd_bwd_vs_{name}"] = row[f"{name}_fwd_bwd_ms"] / row["op_fwd_bwd_ms"]
        rows.append(row)
        del inputs
        if on_gpu:
            torch.cuda.empty_cache()
    return {
        "device": device,
        "device_name": info.device_name(device),
        "dtype": dtype,
        "quick": quick,
        "mfkernels": __version__,
        "torch": torch.__version__,
        "build": _extension.build_info(),
        # glibc's defaults hand large freed blocks back to the kernel: fresh outputs then page-fault
        "cpu_freed_memory_retained": cpu_memory.freed_memory_retained(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "results": rows,
    }


def format_table(report: dict[str, object]) -> str:
    lines = [
        f"mfkernels bench on {report['device_name']} [{report['device']}, {report['dtype']}]"
        f"{' (quick)' if report['quick'] else ''}; times are medians in ms, speed-up = twin / op"
        f"{'; freed CPU memory retained' if report.get('cpu_freed_memory_retained') else ''}",
        "",
    ]
    width = max([2] + [len(r["op"]) for r in report["results"]])
    header = (
        f"{'op':<{width}} {'shape':<18} {'fwd op':>9} {'fwd twin':>9} {'speed-up':>9}"
        f" {'f+b op':>9} {'f+b twin':>9} {'speed-up':>9} {'f+b MB':>9} {'op GB/s':>8} {'copy GB/s':>9} {'of copy':>7}"
    )
    lines += [header, "-" * len(header)]
    for r in report["results"]:
        shape = "(" + ", ".join(str(s) for s in r["shape"]) + ")"
        lines.append(
            f"{r['op']:<{width}} {shape:<18} {r['op_fwd_ms']:>9.3f} {r['twin_fwd_ms']:>9.3f}"
            f" {r['speedup_fwd']:>8.2f}x {r['op_fwd_bwd_ms']:>9.3f} {r['twin_fwd_bwd_ms']:>9.3f}"
            f" {r['speedup_fwd_bwd']:>8.2f}x {r['fwd_bwd_bytes'] / 1e6:>9.1f} {r['op_fwd_bwd_gbs']:>8.1f}"
            f" {r['copy_gbs']:>9.1f} {100 * r['copy_fraction_fwd_bwd']:>6.1f}%"
        )
        for key in r:
            if key.startswith("speedup_fwd_bwd_vs_"):
                name = key[len("speedup_fwd_bwd_vs_"):]
                lines.append(
                    f"{'':<{width}}   vs {name}: f+b {r[name + '_fwd_bwd_ms']:.3f} ms, op {r[key]:.2f}x faster"
                )
            elif key.endswith("_skipped"):
                lines.append(f"{'':<{width}}   vs {key[:-len('_skipped')]}: not timed ({r[key]})")
    return "\n".join(lines)


def write_json(report: dict[str, object], path: str) -> None:
    """Writes atomically (temp file + rename) so an interrupted run never leaves half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
