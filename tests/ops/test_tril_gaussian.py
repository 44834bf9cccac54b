"""mfkernels.ops.tril_gaussian_log_prob: sigma > 0 and sigma = 0 full rank against
torch.distributions.MultivariateNormal and the twin (float64), the degenerate sigma = 0 case against
numpy's pseudo-inverse and pseudo-determinant, gradients, vmap, opcheck, compile, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from mfkernels import reference
from mfkernels.ops import tril_gaussian_log_prob


def scale(D, gen, device="cpu", dtype=torch.float64):
    """Well-conditioned lower-triangular A; its upper triangle holds junk the op must ignore."""
    A = torch.randn(D, D, dtype=dtype, generator=gen) / D**0.5 + torch.eye(D, dtype=dtype)
    return A.to(device)


def dense(z, A, sigma):
    L = torch.tril(A)
    cov = L @ L.T + sigma**2 * torch.eye(L.shape[0], dtype=L.dtype, device=L.device)
    return MultivariateNormal(torch.zeros_like(cov[0]), cov, validate_args=False).log_prob(z)


@pytest.mark.parametrize("sigma", [0.5, 1e-2, 0.0])
# D = 300 takes the block-row products of the compiled op (D >= 256, a partial last block)
@pytest.mark.parametrize("B,D", [(6, 5), (1, 1), (0, 3), (40, 17), (8, 300)])
def test_values_and_gradients_match_multivariate_normal(B, D, sigma, device, gen):
    z = torch.randn(B, D, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    A = scale(D, gen, device).requires_grad_()
    s = torch.tensor(sigma, dtype=torch.float64, device=device, requires_grad=True)
    ours, expected = tril_gaussian_log_prob(z, A, s), dense(z, A, s)
    assert ours.shape == (B,)
    torch.testing.assert_close(ours, expected, rtol=1e-11, atol=1e-10)
    torch.testing.assert_close(ours, reference.tril_gaussian_log_prob(z, A, s), rtol=1e-11, atol=1e-10)
    weights = torch.randn(B, dtype=torch.float64, generator=gen).to(device)
    got = torch.autograd.grad((ours * weights).sum(), (z, A, s), allow_unused=True)
    want = torch.autograd.grad((expected * weights).sum(), (z, A, s), allow_unused=True)
    for name, a, b in zip(("z", "A", "sigma"), got, want):
        b = torch.zeros_like(a) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")
    assert torch.equal(torch.triu(got[1], 1), torch.zeros_like(got[1])), "the upper triangle is never read"
    # a sigma without gradient skips tr(Sigma^-1) in the backward: same z and A gradients
    fixed = torch.autograd.grad((tril_gaussian_log_prob(z, A, s.detach()) * weights).sum(), (z, A))
    for a, b in zip(fixed, got[:2]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradcheck_noisy_and_triangular(device, gen):
    z = torch.randn(4, 5, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    A = scale(5, gen, device).requires_grad_()
    sigma = torch.tensor(0.4, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(tril_gaussian_log_prob, (z, A, sigma))
    assert torch.autograd.gradcheck(lambda z, A: tril_gaussian_log_prob(z, A, 0.0), (z, A))


def degenerate_problem(gen, D=6, r=2, B=5, device="cpu"):
    A = torch.tril(torch.randn(D, D, dtype=torch.float64, generator=gen))
    A[:, r:] = 0  # rank r
    z = torch.randn(B, D, dtype=torch.float64, generator=gen) @ A.T  # on the range of A
    return z.to(device), A.to(device)


def test_degenerate_case_matches_numpy_pseudo_inverse_and_pseudo_determinant(device, gen):
    z, A = degenerate_problem(gen, device=device)
    off = z.clone()
    off[0] += 0.1 * torch.randn(6, dtype=torch.float64, generator=gen).to(device)
    ours = tril_gaussian_log_prob(off, A).cpu()
    off, A = off.cpu(), A.cpu()
    M = (A @ A.T).numpy()
    eig = np.linalg.eigvalsh(M)
    eig = eig[eig > 1e-12 * eig.max()]
    assert len(eig) == 2
    expected = (-0.5 * np.einsum("bi,ij,bj->b", off.numpy(), np.linalg.pinv(M), off.numpy())
                - 0.5 * np.sum(np.log(2 * np.pi * eig)))
    assert ours[0].item() == -math.inf
    np.testing.assert_allclose(ours[1:].numpy(), expected[1:], rtol=1e-10)
    assert not torch.isnan(ours).any()


def test_degenerate_gradients_match_autograd_through_pinv(device, gen):
    """At fixed rank and z on the range, the pseudo-inverse formula differentiated by autograd
    (torch.linalg.pinv, svdvals) is an independent statement of the analytic gradients."""
    z, A = degenerate_problem(gen, device=device)
    z, A = z.requires_grad_(), A.requires_grad_()
    weights = torch.randn(5, dtype=torch.float64, generator=gen).to(device)
    got = torch.autograd.grad((tril_gaussian_log_prob(z, A) * weights).sum(), (z, A))

    def oracle(z, A):
        L = torch.tril(A)
        s = torch.linalg.svdvals(L)[:2]
        quad = torch.einsum("bi,ij,bj->b", z, torch.linalg.pinv(L @ L.T, hermitian=True), z)
        return -0.5 * quad - torch.log(s).sum() - math.log(2 * math.pi)

    want = torch.autograd.grad((oracle(z, A) * weights).sum(), (z, A))
    torch.testing.assert_close(got[0], want[0], rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(got[1], torch.tril(want[1]), rtol=1e-6, atol=1e-7)
    off = z.detach().clone()
    off[0, 0] += 1.0
    off.requires_grad_()
    (g,) = torch.autograd.grad(tril_gaussian_log_prob(off, A.detach())[1:].sum(), off)  # -inf row unused: 0
    assert torch.equal(g[0], torch.zeros(6, dtype=torch.float64, device=device)) and torch.isfinite(g).all()


def test_sigma_gradient_under_torch_func_and_vmap(device, gen):
    """The backward skips tr(Sigma^-1) when sigma needs no gradient (needs_input_grad); under torch.func
    that flag must still see sigma: grad and vmap(grad) against MultivariateNormal, block path (D = 300)."""
    z = torch.randn(4, 300, dtype=torch.float64, generator=gen).to(device)
    A = scale(300, gen, device)
    sigmas = torch.tensor([0.3, 0.7], dtype=torch.float64, device=device)
    got = torch.func.vmap(torch.func.grad(lambda s: tril_gaussian_log_prob(z, A, s).sum()))(sigmas)
    want = torch.stack([torch.func.grad(lambda s: dense(z, A, s).sum())(s) for s in sigmas])
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    assert got.abs().min() > 1.0  # a real gradient, not the skipped branch's 0


def test_degenerate_tangents_match_forward_mode_through_pinv(device, gen):
    """The degenerate route's jvp (eager forward AD) against forward-mode AD through the pseudo-inverse
    oracle at fixed rank, and against the analytic reverse-mode gradients dotted with the tangents."""
    import torch.autograd.forward_ad as fwAD

    z, A = degenerate_problem(gen, device=device)
    z_dot = torch.randn_like(z)
    A_dot = torch.randn(6, 6, dtype=torch.float64, generator=gen).to(device)
    A_dot[:, 2:] = 0  # tangents that keep the rank (and range) fixed
    z_dot = z_dot @ A.T  # stays on the range

    def oracle(z, A):
        L = torch.tril(A)
        s = torch.linalg.svdvals(L)[:2]
        quad = torch.einsum("bi,ij,bj->b", z, torch.linalg.pinv(L @ L.T, hermitian=True), z)
        return -0.5 * quad - torch.log(s).sum() - math.log(2 * math.pi)

    with fwAD.dual_level():
        ours = fwAD.unpack_dual(tril_gaussian_log_prob(fwAD.make_dual(z, z_dot), fwAD.make_dual(A, A_dot))).tangent
        want = fwAD.unpack_dual(oracle(fwAD.make_dual(z, z_dot), fwAD.make_dual(A, A_dot))).tangent
    torch.testing.assert_close(ours, want, rtol=1e-6, atol=1e-8)
    jac_z, jac_A = torch.autograd.functional.jacobian(lambda z, A: tril_gaussian_log_prob(z, A), (z, A))
    torch.testing.assert_close(ours, torch.einsum("nbi,bi->n", jac_z, z_dot) + torch.einsum("nij,ij->n", jac_A, A_dot))
    off = z.clone()
    off[0, 0] += 1.0
    with fwAD.dual_level():
        t = fwAD.unpack_dual(tril_gaussian_log_prob(fwAD.make_dual(off, z_dot), A)).tangent
    assert torch.isnan(t[0]) and torch.isfinite(t[1:]).all()


def test_vmap_over_z_and_over_A(device, gen):
    A = scale(4, gen, device)
    zs = torch.randn(3, 5, 4, dtype=torch.float64, generator=gen).to(device)
    As = torch.stack([scale(4, gen, device) for _ in range(3)])
    for sigma in (0.3, 0.0):
        f = lambda z, A: tril_gaussian_log_prob(z, A, sigma)  # noqa: E731
        torch.testing.assert_close(torch.func.vmap(f, (0, None))(zs, A), dense(zs, A, sigma))
        torch.testing.assert_close(torch.func.vmap(f, (None, 0))(zs[0], As),
                                   torch.stack([dense(zs[0], a, sigma) for a in As]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_all_kernels(dtype, device, gen):
    z = torch.randn(5, 4, dtype=dtype, generator=gen).to(device)
    A = scale(4, gen, device, dtype)
    sigma = torch.tensor(0.2, dtype=dtype, device=device)
    grad = torch.randn(5, dtype=dtype, generator=gen).to(device)
    _, C, w, C_block_inv = torch.ops.mfkernels.tril_gaussian_noisy_forward(z, A, sigma)
    _, w0 = torch.ops.mfkernels.tril_gaussian_triangular_forward(z, A)
    for op, args in [
        (torch.ops.mfkernels.tril_gaussian_noisy_forward, (z, A, sigma)),
        (torch.ops.mfkernels.tril_gaussian_noisy_backward, (grad, A, sigma, C, w, C_block_inv)),
        (torch.ops.mfkernels.tril_gaussian_triangular_forward, (z, A)),
        (torch.ops.mfkernels.tril_gaussian_triangular_backward, (grad, A, w0)),
        (
            torch.ops.mfkernels.tril_gaussian_noisy_jvp,
            (torch.randn_like(z), torch.randn_like(A), sigma * 0.3, A, sigma, C, w),
        ),
        (torch.ops.mfkernels.tril_gaussian_triangular_jvp, (torch.randn_like(z), torch.randn_like(A), A, w0)),
    ]:
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("D", [1, 5, 128, 300])
def test_noisy_forward_factor_and_block_inverses_against_dense_cholesky(D, device, gen):
    """The saved outputs the backward relies on: C is torch.linalg.cholesky of L L^T + sigma^2 I (lower, its upper
    triangle zero), w = C^-1 z, and C_block_inv holds the inverses of C's 128 x 128 diagonal blocks (D = 300: two
    full blocks and one of 44 in the corner of an identity tile)."""
    z = torch.randn(7, D, dtype=torch.float64, generator=gen).to(device)
    A, sigma = scale(D, gen, device), 0.3
    _, C, w, C_block_inv = torch.ops.mfkernels.tril_gaussian_noisy_forward(
        z, A, torch.tensor(sigma, dtype=torch.float64, device=device))
    L = torch.tril(A)
    expected = torch.linalg.cholesky(L @ L.T + sigma**2 * torch.eye(D, dtype=A.dtype, device=device))
    torch.testing.assert_close(C, expected)
    assert torch.equal(torch.triu(C, 1), torch.zeros_like(C))
    torch.testing.assert_close(w, torch.linalg.solve_triangular(expected, z.T, upper=False).T)
    assert C_block_inv.shape == (math.ceil(D / 128), 128, 128)
    for i in range(C_block_inv.shape[0]):
        i0, i1 = 128 * i, min(D, 128 * (i + 1))
        tile = C_block_inv[i]
        torch.testing.assert_close(tile[: i1 - i0, : i1 - i0], torch.linalg.inv(expected[i0:i1, i0:i1]))
        torch.testing.assert_close(tile[i1 - i0:, i1 - i0:], torch.eye(128 - (i1 - i0), dtype=A.dtype, device=device))
        assert not tile[: i1 - i0, i1 - i0:].any() and not tile[i1 - i0:, : i1 - i0].any()


def test_float32_error_is_within_conditioning_bound(device, gen):
    """|A| ~ 1, cond(A) ~ 3: float32 keeps a few eps relative to the log-density's terms (~D)."""
    z = torch.randn(64, 100, dtype=torch.float64, generator=gen).to(device)
    A = scale(100, gen, device)
    for sigma in (1e-2, 0.0):
        exact = tril_gaussian_log_prob(z, A, sigma)
        single = tril_gaussian_log_prob(z.float(), A.float(), sigma).double()
        assert ((single - exact).abs() / (exact.abs() + 100)).max() < 100 * torch.finfo(torch.float32).eps


def test_torch_compile_fullgraph_matches_eager(device, gen):
    z = torch.randn(6, 5, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    A = scale(5, gen, device).requires_grad_()
    sigma = torch.tensor(0.1, dtype=torch.float64, device=device, requires_grad=True)

    def loss(z, A, sigma):
        return tril_gaussian_log_prob(z, A, sigma).sum() + tril_gaussian_log_prob(z, A, 0.0).sum()

    compiled = torch.compile(loss, fullgraph=True)
    value = compiled(z, A, sigma)
    torch.testing.assert_close(value, loss(z, A, sigma))
    for a, b in zip(torch.autograd.grad(value, (z, A, sigma)), torch.autograd.grad(loss(z, A, sigma), (z, A, sigma))):
        torch.testing.assert_close(a, b)


def test_bad_inputs_raise_clear_errors(device, gen):
    z, A = torch.randn(3, 4, dtype=torch.float64).to(device), scale(4, gen, device)
    with pytest.raises(ValueError, match=r"'A' must be square \(D, D\) = \(4, 4\)"):
        tril_gaussian_log_prob(z, A[:3])
    with pytest.raises(ValueError, match="'sigma' must be >= 0"):
        tril_gaussian_log_prob(z, A, -1.0)
    with pytest.raises(ValueError, match="'sigma' must be >= 0"):
        tril_gaussian_log_prob(z, A, torch.tensor(-1.0, dtype=torch.float64, device=device))
    with pytest.raises(ValueError, match="'sigma' must be a float or a 0-dim tensor"):
        tril_gaussian_log_prob(z, A, torch.ones(2, dtype=torch.float64, device=device))
    with pytest.raises(TypeError, match="'A' has dtype torch.float32"):
        tril_gaussian_log_prob(z, A.float())
    with pytest.raises(ValueError, match="'rank_tol' must be a float in"):
        tril_gaussian_log_prob(z, A, rank_tol=2.0)
    sigma = torch.tensor(0.1, dtype=torch.float64, device=device)
    _, C, w, C_block_inv = torch.ops.mfkernels.tril_gaussian_noisy_forward(z, A, sigma)
    with pytest.raises(RuntimeError, match="argument 'grad' must have shape"):
        torch.ops.mfkernels.tril_gaussian_noisy_backward(z[:2, 0], A, sigma, C, w, C_block_inv)
    with pytest.raises(RuntimeError, match=r"argument 'C_block_inv' must have shape \(ceil\(D / 128\), 128, 128\)"):
        torch.ops.mfkernels.tril_gaussian_noisy_backward(z[:, 0], A, sigma, C, w, C_block_inv[:, :4, :4])


@pytest.mark.parametrize("sigma", [0.3, 0.0])
def test_jvp_matches_forward_mode_through_multivariate_normal(sigma, device, gen):
    """Compiled tangents (noisy and triangular routes) against autograd's forward mode through the dense
    covariance and MultivariateNormal; the upper triangle of A's tangent must be ignored like A's."""
    z = torch.randn(6, 5, dtype=torch.float64, generator=gen).to(device)
    A = scale(5, gen, device)
    s = torch.tensor(sigma, dtype=torch.float64, device=device)
    dots = (
        torch.randn(6, 5, dtype=torch.float64, generator=gen).to(device),
        torch.randn(5, 5, dtype=torch.float64, generator=gen).to(device),
        torch.tensor(0.7, dtype=torch.float64, device=device),
    )
    _, ours = torch.func.jvp(tril_gaussian_log_prob, (z, A, s), dots)
    if sigma:
        _, want = torch.func.jvp(dense, (z, A, s), dots)
    else:  # sigma held at 0 (its tangent does not enter the sigma = 0 density)
        _, want = torch.func.jvp(lambda a, b: dense(a, b, 0.0), (z, A), dots[:2])
    torch.testing.assert_close(ours, want, rtol=1e-9, atol=1e-9)
    jac_fwd = torch.func.jacfwd(lambda a: tril_gaussian_log_prob(z, a, s))(A)
    jac_rev = torch.func.jacrev(lambda a: tril_gaussian_log_prob(z, a, s))(A)
    torch.testing.assert_close(jac_fwd, jac_rev, rtol=1e-9, atol=1e-9)
