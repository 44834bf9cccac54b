"""Where rq_spline's CPU kernels spend their cycles, phase by phase (issue "CPU kernels to the memory
limit"): run against a build with `rq_spline_phase_timers.patch` applied, which counts time-stamp-counter
cycles per phase and prints the totals when the process exits.

    git apply benchmarks/rq_spline_phase_timers.patch && pip install --no-build-isolation -e .
    python benchmarks/rq_spline_phases.py forward 100      # then the same with backward
    git apply -R benchmarks/rq_spline_phase_timers.patch && pip install --no-build-isolation -e .

One thread, the bench row's shape (4096, 64), K = 8, linear tails, float32, freed memory retained (so
the gradients' first touch does not land in `from_columns`; pass --default-malloc to see it there).
Divide the printed totals by the call count for cycles per call.
"""

from __future__ import annotations

import argparse

import torch

import mfkernels  # noqa: F401  (registers torch.ops.mfkernels)
from mfkernels.cpu_memory import retain_freed_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernel", choices=("forward", "backward"))
    parser.add_argument("calls", type=int, nargs="?", default=100)
    parser.add_argument("--default-malloc", action="store_true", help="keep glibc's default malloc settings")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error(f"calls must be at least 1, got {args.calls}")
    if not args.default_malloc:
        retain_freed_memory()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    B, D, K = 4096, 64, 8
    x = torch.rand(B, D) * 8 - 4  # three quarters inside the tail bound 3, a quarter in the linear tails
    w, h, d = torch.randn(B, D, K), torch.randn(B, D, K), torch.randn(B, D, K - 1)
    grad_out, grad_logabsdet = torch.randn(B, D), torch.randn(B, D)
    ops = torch.ops.mfkernels
    for _ in range(args.calls):
        if args.kernel == "forward":
            ops.rq_spline_forward(x, w, h, d, False, "linear", 3.0)
        else:
            ops.rq_spline_backward(grad_out, grad_logabsdet, x, w, h, d, False, "linear", 3.0)
    print(f"{args.calls} calls of rq_spline {args.kernel}, (B, D, K) = ({B}, {D}, {K}), 1 thread; the phase "
          "totals follow on stderr at exit, from a build with the patch (none: the build lacks it)")


if __name__ == "__main__":
    main()
