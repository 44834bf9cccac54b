"""The checklist every registered op passes, written once: for each op in the registry
(`mfkernels.ops.all_ops()`, inputs from its `make_inputs`), on every device and in float32 and float64,
the op agrees with its reference twin at batch 0, 1 and 3, on non-contiguous inputs, in its gradients
(and fp64 gradcheck with forward AD), under `torch.func.jvp` and under `torch.func.vmap`; every compiled
kernel it reaches passes `torch.library.opcheck`; it compiles with `torch.compile(fullgraph=True,
dynamic=True)`. Each op's own file keeps what is particular to it: closed forms, independent oracles
(dense linear algebra, nflows, torch.distributions), its options (modes, tails, inverse) through the
same checks, its NaN policy, its errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from small_shapes import SMALL

from mfkernels import ops
from mfkernels.bench.profile import KernelRecorder

# the batch size of these shapes is replaced by 0, 1 and 3
TEST_SHAPES = SMALL
NAMES = list(ops.all_ops())
DTYPES = [torch.float32, torch.float64]
TOLERANCES = {torch.float32: dict(rtol=2e-4, atol=2e-4), torch.float64: dict(rtol=1e-9, atol=1e-9)}


def test_every_registered_op_has_a_test_shape():
    assert set(NAMES) == set(TEST_SHAPES), "add the new op's small shape to TEST_SHAPES"


def make(name, batch, dtype, device, seed=0):
    """Fresh leaf inputs (requiring grad where floating) for `batch` samples."""
    spec = ops.get_op(name)
    shape = (batch, *TEST_SHAPES[name][1:])
    inputs = spec.make_inputs(shape, dtype, device, torch.Generator().manual_seed(seed))
    return tuple(t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs)


def outputs(result):
    return result if isinstance(result, tuple) else (result,)


def weighted_total(result, weights):
    return sum((o * w).sum() for o, w in zip(outputs(result), weights))


@pytest.mark.parametrize("batch", [0, 1, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_values_and_gradients_match_the_twin(name, dtype, batch, device):
    spec = ops.get_op(name)
    inputs = make(name, batch, dtype, device)
    ours, twin = outputs(spec.op(*inputs)), outputs(spec.reference(*inputs))
    assert len(ours) == len(twin)
    for a, b in zip(ours, twin):
        assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
        torch.testing.assert_close(a, b, **TOLERANCES[dtype])
    weights = [torch.randn(o.shape, dtype=dtype, generator=torch.Generator().manual_seed(1)).to(device) for o in ours]
    grads = torch.autograd.grad(weighted_total(spec.op(*inputs), weights), inputs, allow_unused=True)
    grads_twin = torch.autograd.grad(weighted_total(spec.reference(*inputs), weights), inputs, allow_unused=True)
    for x, g, g_twin in zip(inputs, grads, grads_twin):
        g = torch.zeros_like(x) if g is None else g
        g_twin = torch.zeros_like(x) if g_twin is None else g_twin
        assert g.shape == x.shape
        torch.testing.assert_close(g, g_twin, **TOLERANCES[dtype])


def _strided(t):
    """The same values in a non-contiguous tensor (every other element of a buffer twice as long)."""
    if t.dim() == 0:
        return t
    buffer = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
    buffer[..., ::2] = t.detach()
    return buffer[..., ::2].requires_grad_(t.requires_grad)


@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_inputs(name, device):
    spec = ops.get_op(name)
    inputs = make(name, 3, torch.float64, device)
    strided = tuple(_strided(t) for t in inputs)
    assert any(not t.is_contiguous() for t in strided)
    for a, b in zip(outputs(spec.op(*strided)), outputs(spec.op(*inputs))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64_with_forward_ad(name, device):
    spec = ops.get_op(name)
    inputs = make(name, 2, torch.float64, device)
    assert torch.autograd.gradcheck(spec.op, inputs, check_forward_ad=True, check_batched_grad=False)


@pytest.mark.parametrize("name", NAMES)
def test_jvp_and_vmap_match_the_twin(name, device):
    spec = ops.get_op(name)
    inputs = tuple(t.detach() for t in make(name, 3, torch.float64, device))
    g = torch.Generator().manual_seed(2)
    tangents = tuple(torch.randn(t.shape, dtype=t.dtype, generator=g).to(device) for t in inputs)
    _, ours = torch.func.jvp(spec.op, inputs, tangents)
    _, twin = torch.func.jvp(spec.reference, inputs, tangents)
    for a, b in zip(outputs(ours), outputs(twin)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # vmap over a new leading dimension of the first input (the data), the rest shared
    stacked = torch.stack([inputs[0], 2 * inputs[0], -inputs[0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no slow per-sample fallback
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        mapped = torch.func.vmap(lambda first: spec.op(first, *inputs[1:]))(stacked)
    looped = [outputs(spec.reference(first, *inputs[1:])) for first in stacked]
    for k, a in enumerate(outputs(mapped)):
        torch.testing.assert_close(a, torch.stack([row[k] for row in looped]), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_opcheck_every_kernel_the_op_calls(name, dtype, device):
    """torch.library.opcheck (schema, fake/Meta kernel, autograd registration, AOT dispatch) of every
    compiled kernel that the op's forward, backward and tangent (and, for twice-differentiable ops, the
    double backward) reach, with the arguments they got."""
    spec = ops.get_op(name)
    inputs = make(name, 3, dtype, device)
    tangents = tuple(torch.randn_like(t) for t in inputs)
    recorder = KernelRecorder()
    with recorder:
        result = spec.op(*inputs)
        total = weighted_total(result, [torch.ones_like(o) for o in outputs(result)])
        grads = torch.autograd.grad(total, inputs, allow_unused=True, create_graph=spec.second_order)
        torch.func.jvp(spec.op, tuple(t.detach() for t in inputs), tangents)
        if spec.second_order:
            torch.autograd.grad(sum(g.square().sum() for g in grads if g is not None), inputs, allow_unused=True)
    assert recorder.calls, f"{name} reached no mfkernels kernel"
    if spec.second_order:
        assert any(func.name().endswith("_backward_jvp") for func in recorder.calls), "no second-order kernel reached"
    for func, (args, kwargs) in recorder.calls.items():
        torch.library.opcheck(func, args, kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_torch_compile_fullgraph_dynamic(name, device):
    """The op traces into one graph (Meta kernels on symbolic shapes), at two batch sizes without a
    recompile per size, with values and gradients equal to eager."""
    spec = ops.get_op(name)

    def total(*inputs):
        return weighted_total(spec.op(*inputs), [1.0] * 8)

    compiled = torch.compile(total, fullgraph=True, dynamic=True)
    for batch in (3, 5):
        inputs = make(name, batch, torch.float64, device)
        value = compiled(*inputs)
        expected = total(*inputs)
        torch.testing.assert_close(value, expected, rtol=1e-9, atol=1e-9)
        grads = torch.autograd.grad(value, inputs, allow_unused=True)
        eager = torch.autograd.grad(expected, inputs, allow_unused=True)
        for a, b in zip(grads, eager):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
