"""Chart flows (paper 004): the conformal maps against dense Jacobians, the eq-2 density integrating to
one along a circle, one chart = one injective flow's density (Gram determinant by forward tangents +
ops.gram_logdet), chart regions, the VQ-AE's codebook updates, sampling and inference, the toy data."""

import math

import pytest
import torch
from test_flows import randomise

from mfkernels.data.topology import TOPOLOGY_SETS, Circle2D, HolySphere, TorusKnot, TwoCircles
from mfkernels.flows import ChartConformalMaps
from mfkernels.manifold import generator_log_volume
from mfkernels.models import build_model
from mfkernels.models.vq import VQAutoencoder, chart_membership

D64 = torch.float64


@pytest.mark.parametrize("curved", [True, False])
def test_conformal_maps_gram_is_lambda_squared_identity_and_inverse_is_exact(curved, gen):
    maps = ChartConformalMaps(3, 2, 5, curved=curved).double()
    randomise(maps, gen, scale=0.4)
    y = torch.randn(6, 2, generator=gen, dtype=D64)
    k = torch.tensor([0, 1, 2, 2, 1, 0])
    x, log_lambda = maps(y, k)
    for b in range(6):
        J = torch.autograd.functional.jacobian(lambda t: maps(t[None], k[b:b + 1])[0][0], y[b])
        torch.testing.assert_close(J.T @ J, torch.exp(2 * log_lambda[b]).detach() * torch.eye(2, dtype=D64))
    y_back, log_lambda_back = maps.inverse(x, k)
    torch.testing.assert_close(y_back, y)
    torch.testing.assert_close(log_lambda_back, log_lambda)
    # off the chart's manifold c(c†(x)) is a point of it: projecting twice changes nothing more
    off = x + 0.3 * torch.randn(x.shape, generator=gen, dtype=D64)
    once = maps(maps.inverse(off, k)[0], k)[0]
    torch.testing.assert_close(maps(maps.inverse(once, k)[0], k)[0], once)
    with pytest.raises(ValueError, match=r"expected y \(B, 2\) and k \(B,\)"):
        maps(torch.zeros(2, 3, dtype=D64), torch.zeros(2, dtype=torch.long))


def test_bent_chart_is_a_circle_of_radius_one_over_two_b(gen):
    maps = ChartConformalMaps(1, 1, 2).double()
    maps.set_chart(0, torch.tensor([0.0, -1.0]), torch.eye(2), 0.7, torch.tensor([0.0, 0.5]))
    x, _ = maps(torch.linspace(-30, 30, 101, dtype=D64)[:, None], torch.zeros(101, dtype=torch.long))
    torch.testing.assert_close(x.norm(dim=1), torch.ones(101, dtype=D64))  # the unit circle


def circle_atlas(gen, overlap=1e6):
    """Two charts that each cover the unit circle minus one point (bent by b = ±(0, 1/2))."""
    model = build_model("chart", features=2, manifold_dim=1, num_charts=2, overlap=overlap, vq_steps=0,
                        num_layers=2, hidden_features=16).double()
    randomise(model.flow, gen, scale=0.3)
    with torch.no_grad():
        model.chart_logits.copy_(torch.tensor([0.3, -0.2]))
        model.maps.set_chart(0, torch.tensor([0.0, -1.0]), torch.eye(2), 0.7, torch.tensor([0.0, 0.5]))
        model.maps.set_chart(1, torch.tensor([0.0, 1.0]), torch.eye(2), 1.3, torch.tensor([0.0, -0.5]))
    return model.eval()


def test_eq_2_density_integrates_to_one_along_the_circle(gen):
    model = circle_atlas(gen)
    theta = torch.linspace(0, 2 * math.pi, 200_001, dtype=D64)[:-1]
    x = torch.stack([theta.cos(), theta.sin()], 1)
    with torch.no_grad():
        assert model.membership(x).all()  # ε huge: every point in both charts
        log_p = model.log_prob(x)
    assert torch.isfinite(log_p).all()
    integral = float(log_p.exp().sum() * 2 * math.pi / len(theta))
    assert abs(integral - 1) < 1e-3, integral


def test_one_chart_is_a_single_injective_flow_with_the_gram_density(gen):
    """K = 1: log p(x) = log q(z) − ½ log det(JᵀJ) of g = c ∘ h⁻¹ at z, J by forward tangents and
    ops.gram_logdet (the generic M-flow route) instead of the conformal factor."""
    model = build_model("chart", features=3, manifold_dim=2, num_charts=1, vq_steps=0, num_layers=2,
                        hidden_features=16).double()
    randomise(model.flow, gen, scale=0.3)
    with torch.no_grad():
        model.maps.set_chart(0, torch.tensor([0.2, -0.1, 0.3]), torch.linalg.qr(torch.randn(3, 3, dtype=D64,
                             generator=gen))[0], 0.8, torch.tensor([0.1, -0.2, 0.25]))
    model.eval()
    z = torch.randn(5, 2, generator=gen, dtype=D64)
    x = model.decode(z, 0)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1) - generator_log_volume(
        lambda u: model.decode(u, 0), z)
    torch.testing.assert_close(model.log_prob(x), expected.detach())
    torch.testing.assert_close(model.encode(x), z)  # one chart: the expectation is that chart's f(x)


def test_chart_regions_cover_every_point_and_grow_with_epsilon(gen):
    encoded = torch.randn(500, 3, generator=gen)
    codes = torch.randn(6, 3, generator=gen)
    distances = torch.cdist(encoded, codes)
    previous = None
    for epsilon in (0.0, 0.2, 0.5, 1.0, 3.0):
        member = chart_membership(encoded, codes, epsilon, m=1)
        assert member.any(1).all()  # every point in at least one region: its nearest centre's
        assert member[torch.arange(500), distances.argmin(1)].all()
        if previous is not None:
            assert (member | previous).eq(member).all()  # regions only grow with ε
            assert member.sum() >= previous.sum()
        previous = member
    assert chart_membership(encoded, codes, 0.0, m=1).sum(1).eq(1).all()  # ε = 0, m = 1: a partition
    assert chart_membership(encoded, codes, 0.0, m=3).sum(1).eq(3).all()  # the m nearest
    by_hand = distances <= 1.5 * distances.sort(1).values[:, 1:2]
    assert torch.equal(chart_membership(encoded, codes, 0.5, m=2), by_hand)
    with pytest.raises(ValueError, match="1 <= m <= K"):
        chart_membership(encoded, codes, 0.5, m=7)


def test_vq_ema_update_and_dead_code_restart(gen):
    vq = VQAutoencoder(3, 2, 4, hidden_features=8, decay=0.9, restart_below=0.5)
    x = torch.randn(64, 3, generator=gen)
    vq.loss(x)  # the first training batch places the codes on encodings
    encoded = vq.encoder(x).detach()
    assert all(torch.isclose(torch.cdist(c[None], encoded).min(), torch.tensor(0.0), atol=1e-6) for c in vq.codes)
    with torch.no_grad():
        vq.codes[3] = 100.0  # a code nobody picks, nearly out of use: 0.9 * 0.13 < restart_below / K = 0.125
        vq.usage[3] = 0.13
        vq.code_sums[3] = vq.codes[3] * vq.usage[3]
    usage, sums = vq.usage.clone(), vq.code_sums.clone()
    index = vq.nearest(encoded)
    share = torch.bincount(index, minlength=4).double() / 64
    vq.loss(x)
    live = torch.tensor([True, True, True, False])
    expected_usage = 0.9 * usage.double() + 0.1 * share
    torch.testing.assert_close(vq.usage[live].double(), expected_usage[live], rtol=1e-5, atol=1e-6)
    onehot = torch.nn.functional.one_hot(index, 4).double()
    expected_sums = 0.9 * sums.double() + 0.1 * onehot.T @ encoded.double() / 64
    torch.testing.assert_close(vq.codes[live].double(), (expected_sums / expected_usage[:, None])[live],
                               rtol=1e-4, atol=1e-5)
    # code 3 got no points: its usage fell below restart_below / K and it restarted on an encoding
    assert float(vq.usage[3]) == 0.25
    assert torch.cdist(vq.codes[3:4], encoded).min() < 0.01


def test_phases_placement_sampling_and_inference(gen):
    """A short fit: VQ phase, then charts placed on the data and the joint loss; samples lie on their
    charts (projecting them changes nothing), p(k|x) is a distribution over x's charts. How well the
    charts learn the circles is asserted by the reproduction test."""
    from mfkernels.training import fit

    data = TwoCircles()
    x = data.sample(1000, gen)
    model = build_model("chart", features=3, manifold_dim=1, num_charts=6, vq_steps=30, num_layers=2,
                        hidden_features=16)
    model.begin_step(0)
    assert {"vq_reconstruction", "commitment", "codes_used"} <= set(model.loss(x[:100])[1])
    fit(model, x, steps=60, batch_size=100, lr=3e-3, progress=False)
    assert bool(model.charts_placed)
    assert {"nll", "reconstruction", "charts_per_point"} <= set(model.loss(x[:100])[1])
    model.eval()
    with torch.no_grad():
        z, chart = torch.randn(300, 1, generator=gen), torch.randint(6, (300,), generator=gen)
        samples = model.decode(z, chart)  # = sample(): x = g_k(z)
        torch.testing.assert_close(model.chart_coordinates(samples, chart), z, atol=1e-4, rtol=1e-4)
        projected = model.maps(*model.maps.inverse(samples, chart)[:1], chart)[0]
        torch.testing.assert_close(projected, samples, atol=1e-5, rtol=1e-5)  # on its chart's manifold
        assert model.sample(7, temperature=0.5).shape == (7, 3)
        with pytest.raises(ValueError, match=r"'chart' must hold chart indices in \[0, 6\)"):
            model.decode(z[:2], torch.tensor([0, 6]))
        with pytest.raises(ValueError, match=r"expected z \(B, 1\) and 'chart' \(B,\)"):
            model.decode(z[:2], torch.tensor([0]))
        z = model.encode(x[:50], stochastic=True, generator=torch.Generator().manual_seed(1))
        assert z.shape == (50, 1) and torch.isfinite(z).all()
        posterior = model.chart_posterior(x[:50])
        torch.testing.assert_close(posterior.sum(1), torch.ones(50))
        assert (posterior[~model.membership(x[:50])] == 0).all()
        assert torch.isfinite(model.log_prob(x[:50])).all()


@pytest.mark.parametrize("name", sorted(TOPOLOGY_SETS))
def test_toy_sets_lie_on_their_manifolds(name, gen):
    data = TOPOLOGY_SETS[name]()
    x = data.sample(300, gen, dtype=D64)
    assert x.shape == (300, data.ambient_dim)
    assert data.distance(x).max() < 0.03  # nearest of 20 000 reference points (exact for the circles)
    far = x + torch.tensor([0.0] * (data.ambient_dim - 1) + [5.0], dtype=D64)
    assert data.distance(far).min() > 1.0


def test_toy_set_geometry_by_hand(gen):
    torch.testing.assert_close(Circle2D().sample(100, gen, dtype=D64).norm(dim=1), torch.ones(100, dtype=D64))
    two = TwoCircles().sample(400, gen, dtype=D64)
    left = two[:, 0] < 0
    torch.testing.assert_close((two[left] - torch.tensor([-1.5, 0, 0], dtype=D64)).norm(dim=1),
                               torch.ones(int(left.sum()), dtype=D64))
    assert two[left, 2].abs().max() == 0 and two[~left, 1].abs().max() == 0  # xy- and xz-planes
    torch.testing.assert_close(TwoCircles().distance(torch.tensor([[-1.5, 0.0, 0.0]], dtype=D64)),
                               torch.ones(1, dtype=D64))
    sphere = HolySphere(hole=0.4).sample(1000, gen, dtype=D64)
    torch.testing.assert_close(sphere.norm(dim=1), torch.ones(1000, dtype=D64))
    assert sphere.abs().max() < math.cos(0.4)
    knot = TorusKnot().sample(500, gen, dtype=D64)
    ring = (knot[:, :2].norm(dim=1) - 1.0) ** 2 + knot[:, 2] ** 2  # on the torus of radii (1, 0.4)
    torch.testing.assert_close(ring, torch.full((500,), 0.16, dtype=D64))
    with pytest.raises(ValueError, match="coprime"):
        TorusKnot(p=2, q=4)
