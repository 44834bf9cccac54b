"""`mfkernels bench`: every registered op against its pure-torch twin, in the same process.

For each op and benchmark shape it times the forward pass (under no_grad) and forward + backward
(gradient of the sum of all outputs with respect to every input) of the op and of the twin, takes the
median over repeats after a warm-up (torch.utils.benchmark, which synchronises CUDA), and reports
twin time / op time as the speed-up. Results go to a table and, optionally, a JSON file.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Sequence

import torch
from torch.utils.benchmark import Timer
from tqdm import tqdm

from . import _extension, info
from ._version import __version__
from .ops import all_ops, get_op

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _median_seconds(fn, min_run_time: float) -> float:
    fn()
    fn()
    # Timer defaults to one thread; time with the threads torch (and the user) would use
    return Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()).blocked_autorange(min_run_time=min_run_time).median


def _forward(fn, inputs):
    def run():
        with torch.no_grad():
            fn(*inputs)

    return run


def _total(out) -> torch.Tensor:
    """A scalar depending on every output (ops may return a tensor or a tuple of tensors)."""
    outs = out if isinstance(out, tuple) else (out,)
    return sum(o.sum() for o in outs)


def _forward_backward(fn, inputs):
    def run():
        torch.autograd.grad(_total(fn(*inputs)), inputs)

    return run


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
    min_run_time = 0.05 if quick else 0.5
    jobs = [(spec, shape) for spec in specs for shape in spec.bench_shapes]
    rows = []
    generator = torch.Generator().manual_seed(seed)
    for spec, shape in tqdm(jobs, desc="bench", disable=not progress or None, leave=False):
        inputs = spec.make_inputs(shape, DTYPES[dtype], device, generator)
        row = {"op": spec.name, "shape": list(shape), "shape_names": spec.shape_names}
        for impl, fn in (("op", spec.op), ("twin", spec.reference)):
            row[f"{impl}_fwd_ms"] = 1e3 * _median_seconds(_forward(fn, inputs), min_run_time)
            row[f"{impl}_fwd_bwd_ms"] = 1e3 * _median_seconds(_forward_backward(fn, inputs), min_run_time)
        row["speedup_fwd"] = row["twin_fwd_ms"] / row["op_fwd_ms"]
        row["speedup_fwd_bwd"] = row["twin_fwd_bwd_ms"] / row["op_fwd_bwd_ms"]
        # Other libraries' implementations of the same op (e.g. nflows), when installed.
        for name, factory in spec.baselines.items():
            fn = factory()
            if fn is None:
                continue
            row[f"{name}_fwd_ms"] = 1e3 * _median_seconds(_forward(fn, inputs), min_run_time)
            row[f"{name}_fwd_bwd_ms"] = 1e3 * _median_seconds(_forward_backward(fn, inputs), min_run_time)
            row[f"speedup_fwd_bwd_vs_{name}"] = row[f"{name}_fwd_bwd_ms"] / row["op_fwd_bwd_ms"]
        rows.append(row)
    return {
        "device": device,
        "device_name": info.device_name(device),
        "dtype": dtype,
        "quick": quick,
        "mfkernels": __version__,
        "torch": torch.__version__,
        "build": _extension.build_info(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "results": rows,
    }


def format_table(report: dict[str, object]) -> str:
    lines = [
        f"mfkernels bench on {report['device_name']} [{report['device']}, {report['dtype']}]"
        f"{' (quick)' if report['quick'] else ''}; times are medians in ms, speed-up = twin / op",
        "",
    ]
    width = max([2] + [len(r["op"]) for r in report["results"]])
    header = (
        f"{'op':<{width}} {'shape':<18} {'fwd op':>9} {'fwd twin':>9} {'speed-up':>9}"
        f" {'f+b op':>9} {'f+b twin':>9} {'speed-up':>9}"
    )
    lines += [header, "-" * len(header)]
    for r in report["results"]:
        shape = "(" + ", ".join(str(s) for s in r["shape"]) + ")"
        lines.append(
            f"{r['op']:<{width}} {shape:<18} {r['op_fwd_ms']:>9.3f} {r['twin_fwd_ms']:>9.3f}"
            f" {r['speedup_fwd']:>8.2f}x {r['op_fwd_bwd_ms']:>9.3f} {r['twin_fwd_bwd_ms']:>9.3f}"
            f" {r['speedup_fwd_bwd']:>8.2f}x"
        )
        for key in r:
            if key.startswith("speedup_fwd_bwd_vs_"):
                name = key[len("speedup_fwd_bwd_vs_"):]
                lines.append(f"{'':<{width}}   vs {name}: f+b {r[name + '_fwd_bwd_ms']:.3f} ms, op {r[key]:.2f}x faster")
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
