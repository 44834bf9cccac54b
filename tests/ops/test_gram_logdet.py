"""mfkernels.ops.gram_logdet against independent oracles: float64 dense slogdet, numpy, the reference
twin's autograd, gradcheck, opcheck; plus its singular/NaN policy, shapes, errors and transforms."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mfkernels import ops, reference

SHAPES = [  # (batch..., D, d): d = D, d = 1, the fused and BLAS CPU paths, d > 64 (CUDA's ATen path)
    (5, 3, 3),
    (7, 10, 1),
    (4, 64, 8),
    (2, 3, 40, 6),
    (3, 100, 70),
    (2, 784, 32),
    (6, 2, 1),
]


def randn(*shape, dtype=torch.float64, device="cpu", gen=None):
    return torch.randn(*shape, dtype=dtype, generator=gen).to(device)


def with_condition_number(B, D, d, cond, gen, dtype=torch.float64, device="cpu"):
    """J = U diag(s) V^T with singular values spaced log-uniformly from 1 down to 1/cond."""
    U, _ = torch.linalg.qr(torch.randn(B, D, d, dtype=torch.float64, generator=gen))
    V, _ = torch.linalg.qr(torch.randn(B, d, d, dtype=torch.float64, generator=gen))
    s = torch.logspace(0, -np.log10(cond), d, dtype=torch.float64)
    return ((U * s) @ V.mT).to(dtype=dtype, device=device)


def dense_oracle(J: torch.Tensor) -> torch.Tensor:
    """0.5 log det(J^T J) in float64 through slogdet of the explicit Gram matrix."""
    J = J.detach().to("cpu", torch.float64)
    return 0.5 * torch.linalg.slogdet(J.mT @ J).logabsdet


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float64_matches_dense_slogdet_and_numpy(shape, device, gen):
    J = randn(*shape, device=device, gen=gen)
    out = ops.gram_logdet(J)
    assert out.shape == shape[:-2] and out.device.type == device and out.dtype == torch.float64
    torch.testing.assert_close(out.cpu(), dense_oracle(J), rtol=1e-12, atol=1e-12)
    Jn = J.cpu().numpy()
    _, numpy_logdet = np.linalg.slogdet(np.swapaxes(Jn, -1, -2) @ Jn)
    np.testing.assert_allclose(out.cpu().numpy(), 0.5 * numpy_logdet, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cond", [1e2, 1e4, 1e6])
def test_float64_ill_conditioned(cond, device, gen):
    J = with_condition_number(6, 50, 12, cond, gen, device=device)
    expected = torch.log(torch.logspace(0, -np.log10(cond), 12, dtype=torch.float64)).sum()
    # Computing through J^T J squares the condition number: relative error ~ d * eps * cond^2.
    tol = 12 * 2.2e-16 * cond**2 * 10
    torch.testing.assert_close(ops.gram_logdet(J).cpu(), expected.expand(6), rtol=0, atol=max(tol, 1e-12))


@pytest.mark.parametrize("cond", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("D,d", [(64, 8), (784, 32), (5, 5)])
def test_float32_within_conditioning_bound(D, d, cond, device, gen):
    J64 = with_condition_number(8, D, d, cond, gen)
    out = ops.gram_logdet(J64.to(device, torch.float32))
    # Error of 0.5 log det(G) from perturbations of G: 0.5 * d * kappa(G) * |dG|/|G|, with
    # kappa(G) = cond^2, |dG|/|G| <= (D + d) eps32 (sums of products plus the factorisation), and
    # the rounding of J itself to float32 (one eps32 per entry, times 2 * cond^2 through G).
    eps = torch.finfo(torch.float32).eps
    bound = 0.5 * d * cond**2 * (D + d + 2) * eps
    err = (out.double().cpu() - dense_oracle(J64.to(torch.float32))).abs().max().item()
    assert err <= bound, f"error {err:.3g} exceeds the conditioning bound {bound:.3g}"


def test_batch_shapes_zero_one_and_none(device, gen):
    assert ops.gram_logdet(torch.empty(0, 5, 3, dtype=torch.float64, device=device)).shape == (0,)
    assert ops.gram_logdet(torch.empty(2, 0, 5, 3, device=device)).shape == (2, 0)
    J = randn(1, 9, 4, device=device, gen=gen)
    torch.testing.assert_close(ops.gram_logdet(J).cpu(), dense_oracle(J))
    single = randn(9, 4, device=device, gen=gen)
    out = ops.gram_logdet(single)
    assert out.shape == () and torch.allclose(out.cpu(), dense_oracle(single))
    empty = torch.empty(0, 5, 3, dtype=torch.float64, device=device, requires_grad=True)
    (grad,) = torch.autograd.grad(ops.gram_logdet(empty).sum(), empty)
    assert grad.shape == empty.shape


def test_non_contiguous_inputs(device, gen):
    base = randn(6, 4, 20, device=device, gen=gen)
    J = base.mT  # (6, 20, 4), transposed strides
    assert not J.is_contiguous()
    torch.testing.assert_close(ops.gram_logdet(J).cpu(), dense_oracle(J))
    strided = randn(12, 40, 8, device=device, gen=gen)[::2, ::2, ::2]  # (6, 20, 4), every stride 2
    torch.testing.assert_close(ops.gram_logdet(strided).cpu(), dense_oracle(strided))
    expanded = randn(1, 20, 4, device=device, gen=gen).expand(5, 20, 4)  # broadcast batch, stride 0
    torch.testing.assert_close(ops.gram_logdet(expanded).cpu(), dense_oracle(expanded))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("d", [2, 3, 8, 30])
def test_rank_deficient_gives_minus_inf_never_nan(d, dtype, device, gen):
    D = 2 * d + 3
    J = randn(3, D, d, dtype=dtype, device=device, gen=gen)
    dup = J.clone()
    dup[:, :, -1] = dup[:, :, 0]
    zero = J.clone()
    zero[:, :, d // 2] = 0
    lowrank = randn(3, D, d - 1, dtype=torch.float64, device=device, gen=gen) @ randn(
        3, d - 1, d, dtype=torch.float64, device=device, gen=gen
    )
    for bad in (dup, zero, torch.zeros_like(J)):
        out = ops.gram_logdet(bad)
        assert torch.isneginf(out).all(), out
    if dtype == torch.float64:  # float32 rounding of U @ V is itself full rank at eps level
        assert torch.isneginf(ops.gram_logdet(lowrank)).all()
    mixed = torch.stack([J[0], dup[0]])
    out = ops.gram_logdet(mixed)
    assert torch.isfinite(out[0]) and torch.isneginf(out[1])


def test_singular_rows_have_zero_gradient_when_masked(device, gen):
    J = randn(4, 12, 3, device=device, gen=gen)
    J[1, :, 2] = J[1, :, 0]
    J.requires_grad_()
    out = ops.gram_logdet(J)
    loss = torch.where(torch.isfinite(out), out, torch.zeros_like(out)).sum()
    (grad,) = torch.autograd.grad(loss, J)
    assert torch.isfinite(grad).all() and (grad[1] == 0).all()
    (raw,) = torch.autograd.grad(ops.gram_logdet(J)[1], J)
    assert torch.isnan(raw[1]).all(), "the derivative at a singular row does not exist: NaN, not garbage"


def test_nan_and_inf_inputs_give_nan(device, gen):
    J = randn(3, 10, 4, device=device, gen=gen)
    J[0, 3, 1] = float("nan")
    J[2, 0, 0] = float("inf")
    out = ops.gram_logdet(J)
    assert torch.isnan(out[0]) and torch.isfinite(out[1]) and torch.isnan(out[2])


def test_rtol_argument_moves_the_singular_threshold(device, gen):
    J = with_condition_number(2, 30, 5, 1e3, gen, device=device)  # G has pivots down to ~1e-6 relative
    assert torch.isfinite(ops.gram_logdet(J)).all()
    assert torch.isneginf(ops.gram_logdet(J, rtol=1e-4)).all()
    torch.testing.assert_close(ops.gram_logdet(J, rtol=0.0), ops.gram_logdet(J))


@pytest.mark.parametrize("shape", [(3, 7, 7), (4, 64, 8), (2, 100, 70), (2, 3, 9, 2)], ids=str)
def test_gradcheck_float64(shape, device, gen):
    J = randn(*shape, device=device, gen=gen).requires_grad_()
    assert torch.autograd.gradcheck(ops.gram_logdet, (J,), check_forward_ad=True)
    # The C++ autograd kernel of torch.ops.mfkernels.gram_logdet (for C++/TorchScript users)
    assert torch.autograd.gradcheck(torch.ops.mfkernels.gram_logdet, (J,))


def test_gradient_and_tangent_match_twin(device, gen):
    J = randn(5, 30, 6, device=device, gen=gen).requires_grad_()
    grad_op = torch.autograd.grad(ops.gram_logdet(J).sum(), J)[0]
    grad_twin = torch.autograd.grad(reference.gram_logdet(J).sum(), J)[0]
    torch.testing.assert_close(grad_op, grad_twin)
    # closed form: d/dJ 0.5 log det(J^T J) = J (J^T J)^{-1}
    torch.testing.assert_close(grad_op, J @ torch.linalg.inv(J.mT @ J))
    tangent = randn(5, 30, 6, device=device, gen=gen)
    _, t_op = torch.func.jvp(ops.gram_logdet, (J.detach(),), (tangent,))
    _, t_twin = torch.func.jvp(reference.gram_logdet, (J.detach(),), (tangent,))
    torch.testing.assert_close(t_op, t_twin)


def test_vmap_uses_batch_rules_and_matches_twin(device, gen):
    J = randn(4, 3, 20, 5, device=device, gen=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the per-sample fallback warns; registered rules must not
        # (a first forward-AD call may import torch.jit-scripted decompositions: a DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        out = torch.func.vmap(ops.gram_logdet)(J)
        per_sample_grad = torch.func.vmap(torch.func.grad(lambda j: ops.gram_logdet(j).sum()))(J)
        jac = torch.func.jacfwd(ops.gram_logdet)(J[0, 0])
    torch.testing.assert_close(out, reference.gram_logdet(J))
    twin_grad = torch.func.vmap(torch.func.grad(lambda j: reference.gram_logdet(j).sum()))(J)
    torch.testing.assert_close(per_sample_grad, twin_grad)
    torch.testing.assert_close(jac, torch.func.jacrev(reference.gram_logdet)(J[0, 0]))
    # vmap over a non-leading dimension
    torch.testing.assert_close(torch.func.vmap(ops.gram_logdet, in_dims=1)(J), reference.gram_logdet(J).mT)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_all_kernels(dtype, device, gen):
    J = randn(3, 20, 4, dtype=dtype, device=device, gen=gen)
    _, L, perm = torch.ops.mfkernels.gram_logdet_forward(J)
    grad = randn(3, dtype=dtype, device=device, gen=gen)
    cases = [
        (torch.ops.mfkernels.gram_logdet, (J.clone().requires_grad_(),)),
        (torch.ops.mfkernels.gram_logdet_forward, (J,)),
        (torch.ops.mfkernels.gram_logdet_backward, (grad, J, L, perm)),
        (torch.ops.mfkernels.gram_logdet_jvp, (J, L, perm, randn(3, 20, 4, dtype=dtype, device=device, gen=gen))),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_torch_compile_fullgraph_and_export(device, gen):
    def loss(J):
        return ops.gram_logdet(J * 2.0).sum()

    compiled = torch.compile(loss, fullgraph=True, dynamic=True)
    for shape in [(5, 30, 4), (7, 31, 4)]:
        J = randn(*shape, device=device, gen=gen).requires_grad_()
        value = compiled(J)
        (grad,) = torch.autograd.grad(value, J)
        J2 = J.detach().clone().requires_grad_()
        expected = loss(J2)
        (expected_grad,) = torch.autograd.grad(expected, J2)
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(grad, expected_grad)

    class LogVolume(torch.nn.Module):
        def forward(self, J):
            return ops.gram_logdet(J)

    J = randn(3, 12, 4, device=device, gen=gen)
    exported = torch.export.export(LogVolume(), (J,))
    torch.testing.assert_close(exported.module()(J), ops.gram_logdet(J))


def test_bad_inputs_raise_clear_errors(device):
    with pytest.raises(TypeError, match="'J' must be a torch.Tensor"):
        ops.gram_logdet(np.ones((3, 2)))
    with pytest.raises(TypeError, match="'J' must be float32 or float64, got torch.int64"):
        ops.gram_logdet(torch.ones(3, 2, dtype=torch.long, device=device))
    with pytest.raises(ValueError, match="'J' must have at least 2 dimensions"):
        ops.gram_logdet(torch.ones(3, device=device))
    with pytest.raises(ValueError, match=r"D >= d >= 1.*\(4, 2, 3\)"):
        ops.gram_logdet(torch.ones(4, 2, 3, device=device))
    with pytest.raises(ValueError, match="D >= d >= 1"):
        ops.gram_logdet(torch.ones(4, 3, 0, device=device))
    with pytest.raises(ValueError, match="'rtol' must be None or a float in \\[0, 1\\)"):
        ops.gram_logdet(torch.ones(4, 3, 2, device=device), rtol=-1.0)


def test_compiled_kernels_check_their_inputs_too(device):
    """C++ callers bypass the Python checks; the kernels must refuse bad input, never crash."""
    with pytest.raises(RuntimeError, match="argument 'J' must have D >= d"):
        torch.ops.mfkernels.gram_logdet_forward(torch.ones(2, 3, device=device))
    with pytest.raises(RuntimeError, match="argument 'J' must be float32 or float64"):
        torch.ops.mfkernels.gram_logdet(torch.ones(3, 2, dtype=torch.int32, device=device))
    J = torch.randn(3, 6, 2, dtype=torch.float64, device=device)
    _, L, perm = torch.ops.mfkernels.gram_logdet_forward(J)
    grad = torch.ones(3, dtype=torch.float64, device=device)
    with pytest.raises(RuntimeError, match="argument 'L' must be the factor"):
        torch.ops.mfkernels.gram_logdet_backward(grad, J, L[..., :1], perm)
    with pytest.raises(RuntimeError, match="argument 'grad' must have J's batch shape"):
        torch.ops.mfkernels.gram_logdet_backward(grad[:2], J, L, perm)
    with pytest.raises(RuntimeError, match="argument 'grad' has dtype Float"):
        torch.ops.mfkernels.gram_logdet_backward(grad.float(), J, L, perm)
    with pytest.raises(RuntimeError, match="argument 'perm' must be the int64 permutation"):
        torch.ops.mfkernels.gram_logdet_backward(grad, J, L, perm.int())
    with pytest.raises(RuntimeError, match="argument 'J_dot' must have J's shape"):
        torch.ops.mfkernels.gram_logdet_jvp(J, L, perm, J[:, :5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for a device mix")
def test_device_mix_is_a_clear_error():
    J = torch.randn(3, 6, 2, dtype=torch.float64, device="cuda")
    _, L, perm = torch.ops.mfkernels.gram_logdet_forward(J)
    with pytest.raises(RuntimeError, match="argument 'grad' is on cpu but 'J' is on cuda"):
        torch.ops.mfkernels.gram_logdet_backward(torch.ones(3, dtype=torch.float64), J, L, perm)
