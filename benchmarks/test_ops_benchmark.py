"""pytest-benchmark view of `mfkernels bench`: forward + backward of every registered op and of its
autograd twin, at the op's benchmark shapes, grouped so each group compares op vs twin.

Not part of the default test run (speed goals never live in tests). Run with
    python -m pytest benchmarks --benchmark-json benchmarks/results/pytest-benchmark-<device>.json
and MFKERNELS_BENCH_DEVICE=cuda to time the GPU kernels.
"""

import os

import pytest
import torch

from mfkernels.bench import forward_backward
from mfkernels.ops import all_ops

DEVICE = os.environ.get("MFKERNELS_BENCH_DEVICE", "cpu")
CASES = [(spec.name, tuple(shape)) for spec in all_ops().values() for shape in spec.bench_shapes]


@pytest.mark.parametrize("impl", ["op", "twin"])
@pytest.mark.parametrize("name,shape", CASES, ids=[f"{n}{s}" for n, s in CASES])
def test_forward_backward(benchmark, name, shape, impl):
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("MFKERNELS_BENCH_DEVICE=cuda but torch sees no GPU")
    spec = all_ops()[name]
    inputs = spec.make_inputs(shape, torch.float32, DEVICE, torch.Generator().manual_seed(0))
    run = forward_backward(spec.op if impl == "op" else spec.reference, inputs)
    if DEVICE.startswith("cuda"):
        def timed():
            run()
            torch.cuda.synchronize()
    else:
        timed = run
    benchmark.group = f"{name} {shape} fwd+bwd"
    benchmark(timed)
