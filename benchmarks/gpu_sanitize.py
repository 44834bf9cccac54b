"""Small calls of every op's forward, backward and tangent kernels, for compute-sanitizer.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck python3 benchmarks/gpu_sanitize.py
    (also --tool racecheck / synccheck / initcheck)

Without the caching allocator every tensor is its own allocation, so an out-of-bounds access is an
error the sanitizer sees instead of a silent read of a neighbour in the same pool block. The shapes
hit the kernels' edges: rows that are not a multiple of the block, the largest fused d and one past
it, c = 16 and 17, a partial last tile. Exits non-zero if an op raised; prints one line per case.
"""

from __future__ import annotations

import sys

import torch

from mfkernels.ops import all_ops

SHAPES = {  # small shapes at the kernels' edges, per op (the ops' own bench inputs at these sizes)
    "affine_coupling": [(5, 37), (1, 300)],
    "gram_logdet": [(3, 20, 5), (2, 70, 64), (2, 70, 65), (1, 2, 1)],
    "lowrank_gaussian_log_prob": [(3, 17, 4), (1, 5, 5)],
    "nif_block": [(3, 4, 6, 2), (2, 2, 20, 16), (2, 2, 20, 17)],
    "rq_spline": [(5, 7, 8), (3, 33, 1)],
    "tril_gaussian_log_prob": [(3, 5), (2, 300)],
}


def _outputs(out):
    return out if isinstance(out, tuple) else (out,)


def main(device: str = "cuda") -> int:
    failures = 0
    gen = torch.Generator().manual_seed(0)
    for name, spec in all_ops().items():
        for shape in SHAPES.get(name, []):
            for dtype in (torch.float32, torch.float64):
                try:
                    inputs = spec.make_inputs(shape, dtype, device, gen)
                    outs = _outputs(spec.op(*inputs))
                    total = sum(o.sum() for o in outs)
                    grads = torch.autograd.grad(total, inputs, allow_unused=True)
                    detached = tuple(t.detach() for t in inputs)
                    tangents = tuple(torch.randn_like(t) for t in detached)
                    _, tan = torch.func.jvp(spec.op, detached, tangents)
                    torch.cuda.synchronize() if device.startswith("cuda") else None
                    finite = all(bool(torch.isfinite(o).all()) for o in outs + _outputs(tan)
                                 + tuple(g for g in grads if g is not None))
                    print(f"ok   {name} {shape} {dtype}: outputs{' ' if finite else ' NOT '}finite")
                except Exception as exc:  # report every case, then fail
                    failures += 1
                    print(f"FAIL {name} {shape} {dtype}: {type(exc).__name__}: {exc}".splitlines()[0])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cuda"))
