"""generator_log_volume / manifold_log_prob against autograd Jacobians + slogdet and closed forms."""

import math

import torch
from test_flows import randomise

from mfkernels.manifold import generator_jacobian, generator_log_volume, manifold_log_prob
from mfkernels.models import build_model


def _autograd_log_volume(g, u):
    out = []
    for point in u:
        J = torch.autograd.functional.jacobian(lambda v: g(v[None])[0], point)
        out.append(0.5 * torch.linalg.slogdet(J.mT @ J).logabsdet)
    return torch.stack(out)


def _tiny(name, gen, **options):
    model = build_model(name, features=5, manifold_dim=2, num_layers=2, inner_layers=2, hidden_features=16,
                        tail_bound=3.0, inner_tail_bound=3.0, **options).double().eval()
    randomise(model, gen, scale=0.3)
    return model


def test_log_volume_of_a_flow_generator_matches_autograd_jacobians(gen):
    model = _tiny("mflow", gen)
    u = torch.randn(7, 2, generator=gen, dtype=torch.float64)
    x, J = generator_jacobian(model.decode, u)
    torch.testing.assert_close(x, model.decode(u))
    dense = torch.stack([torch.autograd.functional.jacobian(lambda v: model.decode(v[None])[0], p) for p in u])
    torch.testing.assert_close(J, dense)
    torch.testing.assert_close(generator_log_volume(model.decode, u), _autograd_log_volume(model.decode, u))


def test_batches_of_one_and_zero_points(gen):
    """A single point once made forward AD see a stride-0 input (elements sharing memory)."""
    model = _tiny("mflow", gen)
    u = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(generator_log_volume(model.decode, u[1:2]), generator_log_volume(model.decode, u)[1:2])
    assert generator_log_volume(model.decode, u[:0]).shape == (0,)


def test_log_volume_of_a_linear_generator_is_the_closed_form(gen):
    A = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    u = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    expected = 0.5 * torch.logdet(A.T @ A)
    torch.testing.assert_close(generator_log_volume(lambda v: v @ A.T + b, u), expected.expand(4))


def test_manifold_log_prob_of_a_linear_model_is_the_pushforward_density(gen):
    """decode(u) = A u (orthogonal-free A), encode = pseudo-inverse: p(x) = N(u) / sqrt(det AᵀA)."""
    A = torch.randn(4, 2, generator=gen, dtype=torch.float64)

    class Linear:
        def encode(self, x):
            return torch.linalg.lstsq(A, x.T).solution.T

        def decode(self, u):
            return u @ A.T

    u = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    x = u @ A.T
    normal = torch.distributions.MultivariateNormal(
        torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
    )
    expected = normal.log_prob(u) - 0.5 * torch.logdet(A.T @ A)
    torch.testing.assert_close(manifold_log_prob(Linear(), x), expected)


def test_manifold_log_prob_of_mflow_equals_its_log_prob_and_is_a_density_on_a_circle(gen):
    """On D = 2, d = 1 the learned manifold is a curve; ∫ p ds along it over u' must be ≈ 1."""
    model = build_model("mflow", features=2, manifold_dim=1, num_layers=2, inner_layers=1, hidden_features=16,
                        tail_bound=3.0).double().eval()
    randomise(model, gen, scale=0.2)
    u = torch.linspace(-7, 7, 20001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        x = model.decode(u)
    speed = torch.exp(generator_log_volume(model.decode, u))  # |dg/du'| for d = 1
    density = model.log_prob(x).exp().detach()
    speed = speed.detach()
    torch.testing.assert_close(model.log_prob(x[:50]), manifold_log_prob(model, x[:50]))
    mass = torch.trapezoid(density * speed, u[:, 0])
    assert abs(float(mass) - 1) < 1e-3
    torch.testing.assert_close(density * speed, torch.exp(-0.5 * u[:, 0] ** 2) / math.sqrt(2 * math.pi),
                               rtol=1e-6, atol=1e-9)
