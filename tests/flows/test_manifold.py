"""generator_log_volume / manifold_log_prob against autograd Jacobians + slogdet and closed forms."""

import math

import torch
from test_flows import randomise

from mfkernels.manifold import generator_jacobian, generator_log_volume, manifold_log_prob
from mfkernels.models import build_model


def _autograd_log_volume(g, u):
    out = []
    for point in u:
        J = torch.autograd.functional.jacobian(lambda v: g(v[None])[0], point, create_graph=torch.is_grad_enabled())
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


# ---- training through the log-volume: exact gradients and the stochastic estimator ----

def _parameters(model):
    return [p for p in model.parameters() if p.requires_grad]


def _central_difference(f, p, index, eps=1e-6):
    with torch.no_grad():
        old = p[index].item()
        p[index] = old + eps
        plus = f().item()
        p[index] = old - eps
        minus = f().item()
        p[index] = old
    return (plus - minus) / (2 * eps)


def test_gradient_of_the_log_volume_matches_finite_differences(gen):
    """The case that once returned gradients 1.4x off without a word: d/dθ and d/du of ½ log det(JᵀJ)
    of an M-flow generator, against central differences (float64) and against per-point autograd
    Jacobians + slogdet differentiated by plain autograd."""
    model = _tiny("mflow", gen)
    u = torch.randn(5, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    params = _parameters(model)
    total = generator_log_volume(model.decode, u).sum()
    grads = torch.autograd.grad(total, [u, *params], allow_unused=True, materialize_grads=True)
    dense = torch.autograd.grad(_autograd_log_volume(model.decode, u).sum(), [u, *params], allow_unused=True,
                                materialize_grads=True)
    for ours, oracle in zip(grads, dense):
        torch.testing.assert_close(ours, oracle, rtol=1e-8, atol=1e-10)
    f = lambda: generator_log_volume(model.decode, u.detach()).sum()  # noqa: E731
    checked = 0
    for p, g in zip(params, grads[1:]):
        index = tuple(int(i) for i in torch.randint(0, 10**6, (p.dim(),), generator=gen) % torch.tensor(p.shape))
        torch.testing.assert_close(torch.tensor(_central_difference(f, p, index), dtype=torch.float64), g[index],
                                   rtol=1e-5, atol=1e-7)
        checked += abs(float(g[index])) > 1e-6
    assert checked >= len(params) // 2  # most checked entries are non-zero: the comparison has teeth


def test_conjugate_gradient_solves_batched_spd_systems(gen):
    from mfkernels.conjugate_gradient import conjugate_gradient

    M = torch.randn(6, 5, 5, generator=gen, dtype=torch.float64)
    A = M @ M.mT + 0.5 * torch.eye(5, dtype=torch.float64)
    b = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    b[2] = 0  # a zero right-hand side stays zero
    x, info = conjugate_gradient(lambda v: (A @ v[..., None])[..., 0], b, tol=1e-12, max_iter=50)
    torch.testing.assert_close(x, torch.linalg.solve(A, b))
    assert info.converged and info.residual.max() <= 1e-12 and info.iterations <= 50
    diagonal = torch.diagonal(A, dim1=-2, dim2=-1)
    x_pre, info_pre = conjugate_gradient(lambda v: (A @ v[..., None])[..., 0], b, tol=1e-12, max_iter=50,
                                         preconditioner=lambda r: r / diagonal)
    torch.testing.assert_close(x_pre, torch.linalg.solve(A, b))
    _, capped = conjugate_gradient(lambda v: (A @ v[..., None])[..., 0], b, tol=1e-14, max_iter=1)
    assert capped.iterations == 1 and not capped.converged  # the cap is honoured and reported


def _gradient(value, params):
    grads = torch.autograd.grad(value, params, allow_unused=True, materialize_grads=True)
    return torch.cat([g.flatten() for g in grads])


def test_stochastic_log_volume_is_the_exact_gradient_in_expectation(gen):
    """With probes √d e_k the estimator's expectation is a sum that is exact; with random probes (fixed
    seed, both distributions) its mean over many probes approaches the exact gradient at the Monte Carlo
    rate, without a bias floor; its value is 0."""
    from mfkernels.manifold import stochastic_log_volume

    model = _tiny("mflow", gen)
    u = torch.randn(4, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    params = [u, *_parameters(model)]
    exact = _gradient(generator_log_volume(model.decode, u).sum(), params)
    basis = 2**0.5 * torch.eye(2, dtype=torch.float64)
    surrogate, info = stochastic_log_volume(model.decode, u, probes=basis, tol=1e-12, return_info=True)
    assert info.converged and surrogate.abs().max() == 0
    torch.testing.assert_close(_gradient(surrogate.sum(), params), exact, rtol=1e-8, atol=1e-10)
    for distribution, bound in (("gaussian", 0.12), ("rademacher", 0.05)):
        errors = []
        for probes in (50, 3200):
            estimate = _gradient(stochastic_log_volume(model.decode, u, probes=probes, distribution=distribution,
                                                       tol=1e-12, generator=torch.Generator().manual_seed(3)).sum(),
                                 params)
            errors.append(float((estimate - exact).norm() / exact.norm()))
        # Monte Carlo error ~ c / sqrt(probes) (c ≈ 3 Gaussian, ≈ 1 Rademacher here): 64x the probes, 8x closer
        assert errors[1] < bound and errors[1] < errors[0] / 4, (distribution, errors)


def test_stochastic_log_volume_warns_when_cg_stops_early_and_keeps_nan_rows_to_themselves(gen):
    import pytest

    from mfkernels.manifold import stochastic_log_volume

    model = _tiny("mflow", gen)
    u = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    with pytest.warns(UserWarning, match="conjugate gradients stopped after 1 iterations"):
        stochastic_log_volume(model.decode, u, tol=1e-14, max_iter=1, probes=torch.tensor([[1.0, 1.0]]))
    u[1, 0] = math.nan
    leaf = u.clone().requires_grad_()
    surrogate = stochastic_log_volume(model.decode, leaf, tol=1e-10)
    assert torch.isnan(surrogate[1]) and (surrogate[[0, 2]] == 0).all()
    (grad,) = torch.autograd.grad(surrogate.sum(), leaf)
    assert torch.isnan(grad[1]).all() and torch.isfinite(grad[[0, 2]]).all()
    assert stochastic_log_volume(model.decode, u[:0]).shape == (0,)
