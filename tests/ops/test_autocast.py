"""Mixed precision: under torch.autocast every op computes in float32 and returns float32, with the
same numbers as the op called on the inputs cast to float32 by hand; gradients flow back to
half-precision leaves in their own dtype; a DNF training step runs with bfloat16 conditioners."""

import pytest
import torch
from small_shapes import SMALL

from mfkernels.models import build_model
from mfkernels.ops import all_ops, intrinsic_dimension, spectrum

AUTOCAST_DTYPE = {"cpu": torch.bfloat16, "cuda": torch.float16}


def _outputs(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_op_under_autocast_runs_in_float32(name, device, gen):
    spec = all_ops()[name]
    assert set(SMALL) == set(all_ops()), "every registered op needs a SMALL shape here"
    reference_inputs = [t.detach() for t in spec.make_inputs(SMALL[name], torch.float32, device, gen)]
    low = [t.to(AUTOCAST_DTYPE[device]).requires_grad_() for t in reference_inputs]
    with torch.autocast(device, dtype=AUTOCAST_DTYPE[device]):
        got = _outputs(spec.op(*low))
    want = _outputs(spec.op(*(t.float() for t in low)))
    for g, w in zip(got, want):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, rtol=0, atol=0, equal_nan=True)
    total = sum(o[torch.isfinite(o)].sum() for o in got)
    grads = torch.autograd.grad(total, low, allow_unused=True)
    for leaf, g in zip(low, grads):
        assert g is None or (g.dtype == leaf.dtype and torch.isfinite(g.float()).all())


def test_compiled_primitives_have_autocast_kernels(device, gen):
    """C++ and traced callers reach torch.ops.mfkernels.* directly: half precision is cast to float32
    there too, float64 stays float64."""
    J = torch.randn(3, 6, 2, generator=gen).to(device)
    for dtype, expected in ((AUTOCAST_DTYPE[device], torch.float32), (torch.float64, torch.float64)):
        with torch.autocast(device, dtype=AUTOCAST_DTYPE[device]):
            half_logdet, L, perm = torch.ops.mfkernels.gram_logdet_forward(J.to(dtype))
        assert half_logdet.dtype == L.dtype == expected
        torch.testing.assert_close(half_logdet, torch.ops.mfkernels.gram_logdet_forward(J.to(dtype).to(expected))[0])


def test_spectrum_and_intrinsic_dimension_under_autocast(device, gen):
    low = AUTOCAST_DTYPE[device]
    A = torch.tril(torch.randn(5, 5, generator=gen)).to(device)
    with torch.autocast(device, dtype=low):
        eig, U = spectrum(A.to(low))
        k = intrinsic_dimension(A.to(low))
    assert eig.dtype == U.dtype == torch.float32
    torch.testing.assert_close(eig, spectrum(A.to(low).float())[0])
    assert int(k) == int(intrinsic_dimension(A.to(low).float()))


def test_dnf_training_step_with_low_precision_conditioners(device, gen):
    """One Adam step of the DNF loss (noise off) under autocast (bfloat16 on the CPU, float16 on CUDA):
    the conditioners' linear layers run in low precision, the spline op in float32; the loss and every
    gradient are finite and the loss is within low-precision accuracy of the float32 step's."""
    low = AUTOCAST_DTYPE[device]
    torch.manual_seed(0)
    model = build_model("dnf", features=4, manifold_dim=2, num_layers=2, inner_layers=1, hidden_features=32,
                        noise_std=1e-3, penalty=1.0).to(device)
    x = torch.randn(128, 4, generator=gen).to(device)
    torch.manual_seed(1)
    full, _ = model.loss(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(1)
    with torch.autocast(device, dtype=low):
        loss, terms = model.loss(x)
        first = model.outer.layers[0]  # an RQ spline coupling
        conditioner_out = first.conditioner(x[:, first.identity_index])
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert conditioner_out.dtype == low  # the conditioners really ran in low precision
    opt.zero_grad()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    opt.step()
    assert abs(loss.item() - full.item()) <= 0.05 * abs(full.item()) + 0.05
