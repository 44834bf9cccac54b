"""SpreadFlow (paper 003): volume preservation, the degenerate prior, dimension and projection."""

import math

import torch
from test_flows import dense_jacobian, randomise

from mfkernels.data.spread import SPREAD_DATASETS, FadingSquare, Line, SCurve, Sine
from mfkernels.models import build_model


def _model(features, gen, **options):
    model = build_model("spread", features=features, num_layers=4, hidden_features=16, **options).double()
    randomise(model.flow, gen, scale=0.3)
    return model


def test_flow_preserves_volume_exactly(gen):
    model = _model(5, gen)
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    _, logabsdet = model.flow(x)
    assert torch.equal(logabsdet, torch.zeros(6, dtype=torch.float64))
    J = dense_jacobian(model.flow, x[0])
    torch.testing.assert_close(torch.linalg.slogdet(J).logabsdet, torch.tensor(0.0, dtype=torch.float64))


def test_loss_is_the_spread_likelihood_of_eq_12(gen):
    model = _model(4, gen, prior_noise_std=0.3)
    with torch.no_grad():
        model.A.copy_(torch.tril(torch.randn(4, 4, generator=gen, dtype=torch.float64)) + 2 * torch.eye(4))
    x = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    torch.manual_seed(3)
    loss, terms = model.loss(x)
    torch.manual_seed(3)
    z = model.flow(x)[0]
    z_noisy = z + 0.3 * torch.randn_like(z)
    A = torch.tril(model.A)
    prior = torch.distributions.MultivariateNormal(torch.zeros(4, dtype=torch.float64), A @ A.T + 0.09 * torch.eye(4))
    torch.testing.assert_close(loss, -prior.log_prob(z_noisy).mean())
    torch.testing.assert_close(model.log_prob(x), prior.log_prob(z))


def test_rank_deficient_prior_gives_samples_on_its_range_and_the_dimension(gen):
    model = _model(4, gen)
    with torch.no_grad():  # AAᵀ with eigenvalues (4, 1, 0, 0) up to a rotation in the lower triangle
        model.A.copy_(torch.diag(torch.tensor([2.0, 1.0, 0.0, 0.0], dtype=torch.float64)))
        model.A[1, 0] = 0.5
    assert model.intrinsic_dimension() == 2
    samples = model.sample(50)
    z = model.flow(samples)[0]
    torch.testing.assert_close(z[:, 2:], torch.zeros(50, 2, dtype=torch.float64), atol=1e-10, rtol=0)
    x = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    projected = model.project(x)
    torch.testing.assert_close(model.project(projected), projected)
    assert model.encode(x).shape == (9, 2) and model.project(x, k=1).shape == (9, 4)


def test_input_noise_annealing_schedule():
    model = build_model("spread", features=2, input_noise_std=0.05, anneal_start=100, anneal_every=10,
                        anneal_factor=0.9, min_input_noise=0.01)
    noise = []
    for step in (0, 100, 109, 110, 125, 10_000):
        model.begin_step(step)
        noise.append(model.input_noise())
    assert noise[:3] == [0.05, 0.05, 0.05]
    assert math.isclose(noise[3], 0.045) and math.isclose(noise[4], 0.05 * 0.81)
    assert noise[5] == 0.01


def test_entropy_term_is_eq_39_on_a_tiny_batch(gen):
    model = _model(2, gen, prior_noise_std=0.5, entropy=True)
    z = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.ones(3, dtype=torch.float64)),
        torch.distributions.Independent(torch.distributions.Normal(z, 0.5), 1))
    torch.testing.assert_close(model.negative_entropy(z), mixture.log_prob(z).mean())


def test_spread_data_sets_lie_on_their_manifolds(gen):
    for cls in (Sine, Line, SCurve, FadingSquare):
        data = cls()
        x, _ = data.sample(300, gen, dtype=torch.float64)
        assert x.shape == (300, data.ambient_dim)
        assert float(data.distance(x).max()) < 1e-3
        assert float(data.distance(x + 0.1 * torch.randn(x.shape, generator=gen, dtype=torch.float64)).mean()) > 0.01
    assert set(SPREAD_DATASETS) == {"sine", "line", "s_curve", "fading_square"}
