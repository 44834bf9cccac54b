"""Data on known manifolds: samples follow the stated distributions, densities are normalised."""

import math

import pytest
import torch

from mfkernels.data import ThinSpiral, VonMisesCircle, VonMisesFisherMixture, make_dataset


def _ks(samples: torch.Tensor, cdf) -> float:
    s, _ = samples.double().sort()
    n = len(s)
    F = cdf(s)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum(i / n - F, F - (i - 1) / n).max())


def test_thin_spiral_latent_is_exponential_and_density_integrates_to_one(gen):
    spiral = ThinSpiral(alpha=4 * math.pi / 3)
    x, u = spiral.sample(20000, gen, dtype=torch.float64)
    exp = torch.distributions.Exponential(torch.tensor(1 / 0.3, dtype=torch.float64))
    assert _ks(u, exp.cdf) < 1.63 / math.sqrt(len(u))  # 1% level of the KS test
    torch.testing.assert_close(x, spiral.embed(u))
    torch.testing.assert_close(spiral.latent_of(x), u)
    # radius α√u/3 and angle α√u (mod 2π), as in the paper's g(u)
    torch.testing.assert_close(x.norm(dim=1), spiral.alpha * u.sqrt() / 3)
    grid = torch.linspace(1e-7, spiral.quantile(1 - 1e-9), 400001, dtype=torch.float64)
    # arc-length density times ds/du = latent density: integrates to 1
    mass = torch.trapezoid(spiral.log_prob(spiral.embed(grid)).exp() * spiral.speed(grid), grid)
    assert abs(float(mass) - 1) < 1e-4
    # speed is |g'(u)|: compare with finite differences of the curve
    h = 1e-6
    u0 = torch.tensor([0.05, 0.3, 1.2], dtype=torch.float64)
    fd = (spiral.embed(u0 + h) - spiral.embed(u0 - h)).norm(dim=1) / (2 * h)
    torch.testing.assert_close(spiral.speed(u0), fd, rtol=1e-6, atol=0)


def test_thin_spiral_default_alpha_and_distance(gen):
    assert ThinSpiral().alpha == pytest.approx(3 * math.pi)
    spiral = ThinSpiral()
    x, _ = spiral.sample(100, gen, dtype=torch.float64)
    assert float(spiral.distance(x).max()) < 1e-3
    normal = torch.stack([x[:, 0], x[:, 1]], 1) / x.norm(dim=1, keepdim=True)  # roughly outward
    assert float(spiral.distance(x + 0.01 * normal).min()) > 0.005


def test_von_mises_circle_matches_torch_distributions(gen):
    data = VonMisesCircle(loc=0.5, concentration=3.0)
    x, angle = data.sample(20000, gen, dtype=torch.float64)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(20000, dtype=torch.float64))
    ref = torch.distributions.VonMises(torch.tensor(0.5, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64))
    torch.testing.assert_close(data.log_prob(x), ref.log_prob(angle))
    grid = torch.linspace(-math.pi, math.pi, 200001, dtype=torch.float64)
    pdf = ref.log_prob(grid).exp()
    cdf_grid = torch.cat(
        [torch.zeros(1, dtype=torch.float64), torch.cumsum((pdf[1:] + pdf[:-1]) / 2 * (grid[1] - grid[0]), 0)]
    )
    cdf = lambda a: torch.from_numpy(__import__("numpy").interp(a.numpy(), grid.numpy(), cdf_grid.numpy()))
    assert _ks(angle, cdf) < 1.63 / math.sqrt(len(angle))


def test_von_mises_fisher_mixture_is_normalised_on_the_sphere(gen):
    data = VonMisesFisherMixture()
    uniform = torch.randn(400000, 3, generator=gen, dtype=torch.float64)
    uniform = uniform / uniform.norm(dim=1, keepdim=True)
    mass = data.log_prob(uniform).exp().mean() * 4 * math.pi
    assert abs(float(mass) - 1) < 0.02
    single = VonMisesFisherMixture(locs=torch.tensor([[0.0, 0.0, 1.0]]), concentrations=torch.tensor([4.0]))
    x, _ = single.sample(50000, gen, dtype=torch.float64)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(50000, dtype=torch.float64))
    mean_resultant = 1 / math.tanh(4.0) - 1 / 4.0  # A_3(κ) = coth κ - 1/κ
    assert abs(float(x[:, 2].mean()) - mean_resultant) < 0.01
    assert float(x[:, :2].mean(0).abs().max()) < 0.01


def test_make_dataset_names():
    assert isinstance(make_dataset("thin_spiral", alpha=2.0), ThinSpiral)
    with pytest.raises(ValueError, match="unknown data set"):
        make_dataset("mnist")
