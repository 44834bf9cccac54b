"""mfkernels.ops.nif_block against a dense NIF implementation (the full N x M block-diagonal A,
eqs 9, 41, 42 evaluated with dense linear algebra), torch.distributions for the marginal, the
block-wise twin; gradients, opcheck, errors; nif_sample_posterior's moments."""

from __future__ import annotations

import math

import pytest
import torch

from mfkernels import reference
from mfkernels.ops import nif_block, nif_sample_posterior


def layer(B, P, r, c, gen, device="cpu", dtype=torch.float64):
    x = torch.randn(B, P, r, dtype=dtype, generator=gen)
    A = torch.randn(P, r, c, dtype=dtype, generator=gen) / r**0.5
    b = 0.3 * torch.randn(P, r, dtype=dtype, generator=gen)
    log_sigma = -0.5 + 0.2 * torch.randn(P, r, dtype=dtype, generator=gen)
    return tuple(t.to(device) for t in (x, A, b, log_sigma))


def dense_nif(x, A, b, log_sigma):
    """Eqs 9, 41 (with the prior's normalisation, eq 53) and 42 with the assembled N x M matrix."""
    B, P, r = x.shape
    c = A.shape[-1]
    N, M = P * r, P * c
    dA = torch.block_diag(*A)
    Sigma_inv = torch.diag(torch.exp(-2 * log_sigma.expand(P, r)).reshape(N))
    mu = (x - b).reshape(B, N)
    lam = dA.T @ Sigma_inv @ dA
    u = mu @ Sigma_inv @ dA
    log_zx = 0.5 * (
        torch.einsum("bi,ij,bj->b", mu, Sigma_inv, mu) - torch.logdet(Sigma_inv) + N * math.log(2 * math.pi)
    )
    eye = torch.eye(M, dtype=x.dtype, device=x.device)
    k1, k0 = torch.linalg.inv(eye + lam), torch.linalg.inv(lam)
    log_zz_hat = 0.5 * (torch.einsum("bi,ij,bj->b", u, k1, u) - torch.logdet(eye + lam))
    log_zz = 0.5 * (torch.einsum("bi,ij,bj->b", u, k0, u) - torch.logdet(lam) + M * math.log(2 * math.pi))
    return log_zz_hat - log_zx, log_zz - log_zx, (u @ k1).reshape(B, P, c), (u @ k0).reshape(B, P, c)


# c = 16 is the largest latent block of the fused kernels (c x c algebra in registers), c = 17 takes the
# batched-LAPACK driver: both must give the same numbers.
@pytest.mark.parametrize("B,P,r,c", [(4, 3, 5, 2), (1, 1, 3, 3), (0, 2, 4, 1), (3, 6, 12, 3), (2, 2, 7, 1),
                                     (3, 2, 20, 16), (3, 2, 20, 17)])
def test_matches_dense_nif_and_torch_distributions(B, P, r, c, device, gen):
    args = layer(B, P, r, c, gen, device)
    ours = nif_block(*args)
    for name, got, want in zip(("log_px", "manifold_term", "z_mean", "z_point"), ours, dense_nif(*args)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=name)
    for got, want in zip(ours, reference.nif_block(*args)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    x, A, b, log_sigma = args
    N = P * r
    marginal = torch.distributions.LowRankMultivariateNormal(
        b.reshape(N), torch.block_diag(*A), torch.exp(2 * log_sigma).reshape(N), validate_args=False)
    torch.testing.assert_close(ours[0], marginal.log_prob(x.reshape(B, N)), rtol=1e-10, atol=1e-10)


def test_gradients_match_the_dense_route_and_gradcheck(device, gen):
    args = [t.requires_grad_() for t in layer(3, 4, 6, 2, gen, device)]
    ours, dense = nif_block(*args), dense_nif(*args)
    weights = [torch.randn(o.shape, dtype=torch.float64, generator=gen).to(device) for o in ours]
    got = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ours, weights)), args)
    want = torch.autograd.grad(sum((o * w).sum() for o, w in zip(dense, weights)), args)
    for name, a, e in zip(("x", "A", "b", "log_sigma"), got, want):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")
    small = [t.detach().clone().requires_grad_() for t in layer(2, 2, 3, 2, gen, device)]
    assert torch.autograd.gradcheck(nif_block, small)


@pytest.mark.parametrize("output", range(4))
def test_gradient_through_one_output_alone(output, device, gen):
    # the other three outputs' gradients reach the backward as None (no zeros are materialised)
    args = [t.requires_grad_() for t in layer(3, 4, 6, 3, gen, device)]
    got = torch.autograd.grad(nif_block(*args)[output].square().sum(), args)
    want = torch.autograd.grad(dense_nif(*args)[output].square().sum(), args)
    for name, a, e in zip(("x", "A", "b", "log_sigma"), got, want):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9, msg=f"gradient of {name} through output {output}")


def test_broadcast_b_and_scalar_log_sigma(device, gen):
    x, A, b, _ = layer(3, 2, 4, 2, gen, device)
    per_sample_b = b.expand(3, 2, 4) + 0.1 * torch.randn(3, 2, 4, dtype=torch.float64, generator=gen).to(device)
    shared = torch.tensor(-0.3, dtype=torch.float64, device=device)
    ours = nif_block(x, A, per_sample_b, shared)
    want = dense_nif(x, A, per_sample_b, shared.expand(2, 4))
    for got, w in zip(ours, want):
        torch.testing.assert_close(got, w)


def test_vmap_over_samples(device, gen):
    x, A, b, log_sigma = layer(6, 2, 4, 2, gen, device)
    xs = x.view(2, 3, 2, 4)
    batched = torch.func.vmap(nif_block, (0, None, None, None))(xs, A, b, log_sigma)
    for got, want in zip(batched, nif_block(x, A, b, log_sigma)):
        torch.testing.assert_close(got.reshape(want.shape), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype, device, gen):
    x, A, b, log_sigma = layer(3, 2, 4, 2, gen, device, dtype)
    b = b.expand(x.shape).contiguous()
    out = torch.ops.mfkernels.nif_block_forward(x, A, b, log_sigma)
    grads = [torch.randn(o.shape, dtype=dtype, generator=gen).to(device) for o in out[:4]]
    torch.library.opcheck(torch.ops.mfkernels.nif_block_forward, (x, A, b, log_sigma))
    torch.library.opcheck(
        torch.ops.mfkernels.nif_block_backward, (*grads, A, log_sigma, *out[4:6], *out[2:4], *out[6:])
    )
    dots = [torch.randn(t.shape, dtype=dtype, generator=gen).to(device) for t in (x, A, b, log_sigma)]
    torch.library.opcheck(torch.ops.mfkernels.nif_block_jvp, (*dots, A, log_sigma, out[4], *out[2:4], *out[6:]))


def test_sample_posterior_has_the_stochastic_inverse_moments(device, gen):
    """q(z | x) = N(Lambda^-1 u, Lambda^-1) (eq 39): sample mean and covariance of one block."""
    x, A, b, log_sigma = layer(1, 1, 6, 2, gen, device)
    xs = x.expand(20000, 1, 6)
    z = nif_sample_posterior(xs, A, b, log_sigma, generator=torch.Generator(device=device).manual_seed(0))[:, 0]
    _, _, _, z_point = nif_block(x, A, b, log_sigma)
    lam = A[0].T @ torch.diag(torch.exp(-2 * log_sigma[0])) @ A[0]
    cov = torch.linalg.inv(lam)
    torch.testing.assert_close(z.mean(0), z_point[0, 0], atol=4 * cov.diagonal().max().sqrt() / 100, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), cov, rtol=0.05, atol=0.05 * cov.abs().max().item())


def test_bad_inputs_raise_clear_errors(device, gen):
    x, A, b, log_sigma = layer(2, 3, 4, 2, gen, device)
    with pytest.raises(ValueError, match=r"'x' must be \(B, P, r\) = \(B, 3, 4\)"):
        nif_block(x[:, :2], A, b, log_sigma)
    with pytest.raises(ValueError, match="c <= r"):
        nif_block(x[..., :1], A[:, :1], b[:, :1], log_sigma[:, :1])
    with pytest.raises(ValueError, match="'b' of shape"):
        nif_block(x, A, b[:, :3], log_sigma)
    with pytest.raises(ValueError, match="'log_sigma' of shape"):
        nif_block(x, A, b, log_sigma[:2])
    with pytest.raises(ValueError, match=r"'A' must be \(P, r, c\)"):
        nif_block(x, A[0], b, log_sigma)
    with pytest.raises(TypeError, match="'A' has dtype torch.float32"):
        nif_block(x, A.float(), b, log_sigma)


def test_rank_deficient_block_gives_nan_manifold_term_but_finite_marginal(device, gen):
    x, A, b, log_sigma = layer(3, 2, 4, 2, gen, device)
    A = A.clone()
    A[0, :, 1] = 0  # block 0 loses a column: Lambda_0 is singular, the marginal stays well defined
    log_px, manifold, z_mean, z_point = nif_block(x, A, b, log_sigma)
    marginal = torch.distributions.LowRankMultivariateNormal(
        b.reshape(8), torch.block_diag(*A), torch.exp(2 * log_sigma).reshape(8))
    torch.testing.assert_close(log_px, marginal.log_prob(x.reshape(3, 8)))
    assert torch.isfinite(z_mean).all()
    assert torch.isnan(manifold).all() and torch.isnan(z_point[:, 0]).all() and torch.isfinite(z_point[:, 1]).all()


@pytest.mark.parametrize("c", [16, 17])
def test_fused_and_lapack_paths_have_the_dense_gradients(c, device, gen):
    """Both sides of the fused kernels' c <= 16 limit: gradients of all four outputs vs the dense route."""
    args = [t.requires_grad_() for t in layer(3, 2, 20, c, gen, device)]
    ours, dense = nif_block(*args), dense_nif(*args)
    weights = [torch.randn(o.shape, dtype=torch.float64, generator=gen).to(device) for o in ours]
    g_ours = torch.autograd.grad(sum((w * o).sum() for w, o in zip(weights, ours)), args)
    g_dense = torch.autograd.grad(sum((w * o).sum() for w, o in zip(weights, dense)), args)
    for name, a, e in zip(("x", "A", "b", "log_sigma"), g_ours, g_dense):
        torch.testing.assert_close(a, e, rtol=1e-8, atol=1e-8, msg=name)


@pytest.mark.parametrize("B,P,r,c", [(3, 4, 6, 2), (2, 2, 20, 17), (0, 2, 4, 1)])
def test_jvp_matches_the_dense_route(B, P, r, c, device, gen):
    """Forward mode through the compiled nif_block_jvp: torch.func.jvp against the dense implementation
    (autograd's own forward mode through inv/logdet), with tangents in all four inputs, b and log_sigma
    broadcast as the layer passes them."""
    x, A, b, log_sigma = layer(B, P, r, c, gen, device)
    log_sigma = log_sigma[:1]  # (1, r): broadcast over blocks
    tangents = tuple(torch.randn(t.shape, dtype=torch.float64, generator=gen).to(device) for t in (x, A, b, log_sigma))
    _, ours = torch.func.jvp(nif_block, (x, A, b, log_sigma), tangents)
    _, dense = torch.func.jvp(lambda *a: dense_nif(a[0], a[1], a[2], a[3].expand(P, r)), (x, A, b, log_sigma), tangents)
    for name, got, want in zip(("log_px", "manifold_term", "z_mean", "z_point"), ours, dense):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8, msg=name)
    if B:  # jacfwd = jacrev, one sample's log_px w.r.t. A
        f = lambda a: nif_block(x[:1], a, b, log_sigma)[0][0]  # noqa: E731
        torch.testing.assert_close(torch.func.jacfwd(f)(A), torch.func.jacrev(f)(A), rtol=1e-8, atol=1e-8)
