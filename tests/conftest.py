"""Shared fixtures: every op test runs on CPU and, where torch sees a GPU and mfkernels was built
with CUDA kernels, on CUDA too (skipped, never failed, otherwise)."""

import sys
from pathlib import Path

import pytest
import torch

import mfkernels

# Test modules share helpers across the layer folders (e.g. tests/models uses test_flows.randomise);
# with every folder on the path any selection of tests imports them, not only a whole-suite run.
for _folder in ("ops", "flows", "models", "cli"):
    sys.path.insert(0, str(Path(__file__).parent / _folder))


def _cuda_usable() -> bool:
    return torch.cuda.is_available() and mfkernels.build_info()["cuda_built"]


DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not _cuda_usable(), reason="no CUDA device or CUDA kernels not built")
    ),
]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
