"""Gaussian NIF layer, stochastic coupling and the NIF model (paper 001) against dense linear algebra,
torch.distributions and Monte Carlo."""

import math

import pytest
import torch
from test_flows import randomise
from torch.distributions import MultivariateNormal, kl_divergence

from mfkernels.flows import GaussianNIF, StochasticCoupling
from mfkernels.models import build_model

D64 = torch.float64


def _dense_layer(gen, features=5, latent=2):
    layer = GaussianNIF(features, latent, init_sigma=0.7).double()
    with torch.no_grad():
        layer.A.copy_(torch.randn(layer.A.shape, generator=gen, dtype=D64))
        layer.b.copy_(torch.randn(layer.b.shape, generator=gen, dtype=D64))
        layer.log_sigma.copy_(-0.5 + 0.3 * torch.randn(layer.log_sigma.shape, generator=gen, dtype=D64))
    return layer


def _flat(layer, per_block):
    """b or σ² of a layer as a flat vector in the data order."""
    return layer._x_flat(per_block.expand(1, -1, -1))[0]


def _parts(layer):
    A = layer.dense_matrix()
    return A, _flat(layer, layer.b), torch.diag(_flat(layer, torch.exp(2 * layer.log_sigma)))


def test_marginal_is_eq_41_and_matches_monte_carlo_over_z(gen):
    layer = _dense_layer(gen, features=3, latent=1)
    x = torch.randn(4, 3, generator=gen, dtype=D64)
    A, b, S = _parts(layer)
    with torch.no_grad():
        exact = layer.log_marginal(x)
        torch.testing.assert_close(exact, MultivariateNormal(b, A @ A.T + S).log_prob(x))
        z = torch.randn(400_000, 1, generator=gen, dtype=D64)
        likelihood = MultivariateNormal(b, S).log_prob(x[:, None, :] - (z @ A.T)[None])  # (4, n)
        monte_carlo = torch.logsumexp(likelihood, 1) - math.log(z.shape[0])
    torch.testing.assert_close(monte_carlo, exact, atol=2e-2, rtol=0)


def test_elbo_is_log_p_minus_the_kl_of_the_stochastic_inverse(gen):
    layer = _dense_layer(gen)
    x = torch.randn(3, 5, generator=gen, dtype=D64)
    A, b, S = _parts(layer)
    with torch.no_grad():
        lam = A.T @ torch.linalg.solve(S, A)
        z_plus = layer.point_inverse(x)
        torch.testing.assert_close(z_plus, torch.linalg.solve(lam, A.T @ torch.linalg.solve(S, (x - b).T)).T)
        # expected ELBO under q = N(z⁺, Λ⁻¹) with the unit prior, in closed form
        cov_q = torch.linalg.inv(lam)
        expected_elbo = (-0.5 * (z_plus.square().sum(1) + cov_q.trace()) - math.log(2 * math.pi)
                         + layer.manifold_term(x))
        # the true posterior under the unit prior
        post_cov = torch.linalg.inv(torch.eye(2, dtype=D64) + lam)
        post_mean = layer.posterior_mean(x)
        kl = kl_divergence(MultivariateNormal(z_plus, cov_q), MultivariateNormal(post_mean, post_cov))
        torch.testing.assert_close(expected_elbo + kl, layer.log_marginal(x))
        assert (expected_elbo < layer.log_marginal(x)).all()
        # Monte Carlo over the layer's own sampler gives the same expected ELBO
        many = x.repeat_interleave(20_000, 0)
        elbo, _ = layer.elbo(
            many,
            lambda z: MultivariateNormal(torch.zeros(2, dtype=D64), torch.eye(2, dtype=D64)).log_prob(z),
            generator=gen,
        )
        torch.testing.assert_close(elbo.reshape(3, -1).mean(1), expected_elbo, atol=3e-2, rtol=0)


def test_elbo_equals_log_p_when_the_stochastic_inverse_is_the_posterior(gen):
    """With a flat prior (a broad N(0, τ²I)) q(z | x) = p(x | z)/∫p(x | z') dz' is the posterior, so the
    ELBO is exact: E_q[log p(z)] + manifold term = log N(x; b, τ² A Aᵀ + Σ)."""
    layer = _dense_layer(gen)
    x = torch.randn(3, 5, generator=gen, dtype=D64)
    A, b, S = _parts(layer)
    tau = 1e3
    prior = MultivariateNormal(torch.zeros(2, dtype=D64), tau**2 * torch.eye(2, dtype=D64))
    with torch.no_grad():
        many = x.repeat_interleave(2000, 0)
        elbo, _ = layer.elbo(many, prior.log_prob, generator=gen)
        exact = MultivariateNormal(b, tau**2 * A @ A.T + S).log_prob(x)
    torch.testing.assert_close(elbo.reshape(3, -1).mean(1), exact, atol=1e-4, rtol=0)


@pytest.mark.parametrize("tied", [True, False])
def test_block_form_equals_the_dense_form(gen, tied):
    block = GaussianNIF.upsampling(2, 3, 2, (2, 3), init_sigma=0.6, tied=tied).double()
    randomise(block, gen, scale=0.3)
    A, b, S = _parts(block)
    assert A.shape == (72, 12)
    dense = GaussianNIF(72, 12).double()
    with torch.no_grad():
        dense.A.copy_(A[None])
        dense.b.copy_(b[None])
        dense.log_sigma.copy_(0.5 * torch.log(S.diagonal())[None])
    x = torch.randn(4, 72, generator=gen, dtype=D64)
    for method in ("log_marginal", "manifold_term", "point_inverse", "posterior_mean"):
        torch.testing.assert_close(getattr(block, method)(x), getattr(dense, method)(x))
    z = torch.randn(4, 12, generator=gen, dtype=D64)
    torch.testing.assert_close(block.generate(z, 0.0), dense.generate(z, 0.0))
    # the block matrix is the transposed convolution of the latent image (tied) with one kernel
    if tied:
        weight = block.A[0].T.reshape(2, 3, 2, 2)
        image = torch.nn.functional.conv_transpose2d(z.reshape(4, 2, 2, 3), weight, stride=2)
        torch.testing.assert_close(block.generate(z, 0.0) - b, image.flatten(1))


def test_samplers_have_the_stated_moments_and_noise_scale(gen):
    layer = _dense_layer(gen, features=4, latent=2)
    A, b, S = _parts(layer)
    x = torch.randn(1, 4, generator=gen, dtype=D64)
    lam = A.T @ torch.linalg.solve(S, A)
    n = 100_000
    with torch.no_grad():
        inverse, _ = layer.sample_inverse(x.expand(n, 4), generator=gen)
        posterior = layer.sample_posterior(x.expand(n, 4), generator=gen)
        torch.testing.assert_close(inverse.mean(0), layer.point_inverse(x)[0], atol=2e-2, rtol=0)
        torch.testing.assert_close(torch.cov(inverse.T), torch.linalg.inv(lam), atol=2e-2, rtol=5e-2)
        post_cov = torch.linalg.inv(torch.eye(2, dtype=D64) + lam)
        torch.testing.assert_close(posterior.mean(0), layer.posterior_mean(x)[0], atol=2e-2, rtol=0)
        torch.testing.assert_close(torch.cov(posterior.T), post_cov, atol=2e-2, rtol=5e-2)
        z = torch.randn(3, 2, generator=gen, dtype=D64)
        on = layer.generate(z, 0.0)
        torch.testing.assert_close(on, z @ A.T + b)
        torch.testing.assert_close(layer.point_inverse(on), z)  # s = 0 lies on the manifold
        for s in (1.0, 0.25):
            draws = layer.generate(z[:1].expand(n, 2), s, generator=gen) - on[:1]
            torch.testing.assert_close(torch.cov(draws.T), s * S, atol=2e-2, rtol=5e-2)


def test_stochastic_coupling_marginal_and_inverse(gen):
    layer = StochasticCoupling(5, 2, 2, hidden_features=8).double()
    randomise(layer, gen, scale=0.4)
    x = torch.randn(6, 5, generator=gen, dtype=D64)
    A = layer.nif.dense_matrix()
    S = torch.diag(torch.exp(2 * layer.nif.log_sigma[0]))
    with torch.no_grad():
        shift = layer.shift(x[:, :2]) + layer.nif.b[0]
        expected = (MultivariateNormal(torch.zeros(2, dtype=D64), torch.eye(2, dtype=D64)).log_prob(x[:, :2])
                    + MultivariateNormal(shift, A @ A.T + S).log_prob(x[:, 2:]))
        torch.testing.assert_close(layer.log_marginal(x), expected)
        z = torch.randn(6, 4, generator=gen, dtype=D64)
        on = layer.generate(z, 0.0)
        torch.testing.assert_close(on[:, :2], z[:, :2])
        torch.testing.assert_close(layer.point_inverse(on), z)
        sampled, manifold = layer.sample_inverse(x, generator=gen)
        assert sampled.shape == (6, 4) and torch.equal(sampled[:, :2], x[:, :2]) and manifold.shape == (6,)


def _outer_oracle(model, x):
    """log N(f(x); b, A Aᵀ + Σ) + log|det ∂f/∂x| with an autograd Jacobian and torch.distributions."""
    A, b, S = _parts(model.nif)
    out = []
    for point in x:
        J = torch.autograd.functional.jacobian(lambda p: model.flow(p[None])[0][0], point)
        y = model.flow(point[None])[0][0]
        out.append(MultivariateNormal(b, A @ A.T + S).log_prob(y) + torch.linalg.slogdet(J).logabsdet)
    return torch.stack(out)


def test_nif_model_marginal_density_and_importance_bound(gen):
    options = dict(features=16, manifold_dim=8, num_layers=2, hidden_features=16, tail_bound=3.0,
                   upsample_factor=2, seed=3)
    model = build_model("nif", **options).double()
    randomise(model, gen, scale=0.1)
    x = torch.randn(5, 16, generator=gen, dtype=D64)
    exact = _outer_oracle(model, x)
    torch.testing.assert_close(model.log_prob(x).detach(), exact.detach())
    loss, terms = model.loss(x)
    torch.testing.assert_close(loss.detach(), -exact.mean().detach())
    with torch.no_grad():  # the ELBO of the same model (unit prior) lies below its exact density
        elbo = torch.stack([model.elbo(x)[0] for _ in range(200)]).mean(0)
    assert (elbo < exact.detach() - 1e-3).all()


def test_deep_nif_importance_estimate_matches_prior_sampling(gen):
    """With an inner flow the density is the importance-weighted estimate over the stochastic inverse;
    an independent estimator samples the prior instead: log E_{w ~ N(0, I)} N(f(x); A h⁻¹(w) + b, Σ)."""
    model = build_model("nif", features=4, manifold_dim=2, num_layers=2, inner_layers=2, hidden_features=8,
                        objective="elbo", init_sigma=1.0, num_importance=100_000).double()
    randomise(model, gen, scale=0.2)
    x = torch.randn(3, 4, generator=gen, dtype=D64)
    A, b, S = _parts(model.nif)
    torch.manual_seed(0)
    with torch.no_grad():
        y, logabsdet = model.flow(x)
        z = model.inner.inverse(torch.randn(400_000, 2, generator=gen, dtype=D64))[0]
        likelihood = MultivariateNormal(b, S).log_prob(y[:, None, :] - (z @ A.T)[None])
        oracle = torch.logsumexp(likelihood, 1) - math.log(z.shape[0]) + logabsdet
        torch.testing.assert_close(model.log_prob(x), oracle, atol=3e-2, rtol=0)


def test_nif_sampling_noise_scale_and_temperature(gen):
    model = build_model("nif", features=4, manifold_dim=2, num_layers=2, hidden_features=8).double()
    randomise(model, gen, scale=0.2)
    on = model.sample(50, temperature=0.7, generator=torch.Generator().manual_seed(1), noise_scale=0.0)
    # on-manifold samples are fixed points of the projection
    torch.testing.assert_close(model.project(on), on)
    off = model.sample(50, temperature=0.7, generator=torch.Generator().manual_seed(1), noise_scale=1.0)
    assert float((model.project(off) - off).norm(dim=1).mean()) > 1e-2
    origin = model.sample(2, temperature=0.0, noise_scale=0.0)
    torch.testing.assert_close(origin, model.decode(torch.zeros(1, 2, dtype=D64)).expand(2, 4))


def test_nif_training_lowers_the_loss_and_configs_fail_clearly(gen):
    from mfkernels.training import fit

    data = torch.randn(400, 4, generator=gen) @ torch.randn(4, 4, generator=gen) * 0.3
    model = build_model("nif", features=4, manifold_dim=2, num_layers=2, hidden_features=16)
    before = float(model.loss(data)[0])
    fit(model, data, steps=150, batch_size=100, lr=3e-3, progress=False)
    assert float(model.loss(data)[0]) < before - 0.5
    with pytest.raises(ValueError, match="inner_layers=0"):
        build_model("nif", inner_layers=2)
    with pytest.raises(ValueError, match="square image"):
        build_model("nif", features=10, manifold_dim=2, upsample_factor=2)
    with pytest.raises(ValueError, match="multiple"):
        build_model("nif", features=16, manifold_dim=3, upsample_factor=2)
    with pytest.raises(ValueError, match="objective"):
        build_model("nif", objective="vae")
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 4\)"):
        model.log_prob(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="noise_scale"):
        model.nif.generate(torch.zeros(1, 2), -1.0)
