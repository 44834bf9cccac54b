"""Both sides of sample quality (mfkernels.metrics): `coverage` against a brute-force nearest
neighbour, `ks_two_sample` against scipy's two-sample KS statistic, the data sets' `curve_parameter`
against the parameters the points were made from, and `sample_quality` on the failure it exists to
show: samples that lie exactly on the manifold but miss a whole component."""

import math

import pytest
import torch

from mfkernels import metrics
from mfkernels.data.clutter import SquareWithClutter
from mfkernels.data.manifolds import ThinSpiral
from mfkernels.data.spread import FadingSquare, Line, Sine
from mfkernels.data.topology import Circle2D, TorusKnot, TwoCircles


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(7)


def test_coverage_matches_brute_force_nearest_neighbour(gen):
    held_out = torch.randn(57, 3, generator=gen, dtype=torch.float64)
    samples = torch.randn(31, 3, generator=gen, dtype=torch.float64)
    nearest = torch.tensor([min(float((h - s).norm()) for s in samples) for h in held_out], dtype=torch.float64)
    ordered = nearest.sort().values
    radius = float(ordered[28] + ordered[29]) / 2  # between two distances: no rounding at the boundary
    c = metrics.coverage(held_out, samples, radius, batch_size=5)
    assert c["recall"] == pytest.approx(float((nearest <= radius).double().mean()))
    assert c["mean"] == pytest.approx(float(nearest.mean()))
    assert c["median"] == pytest.approx(float(nearest.median()))
    assert c["q90"] == pytest.approx(float(nearest.quantile(0.9)))


def test_coverage_ignores_nonfinite_samples_and_rejects_bad_input(gen):
    held_out = torch.randn(10, 2, generator=gen)
    samples = torch.cat([held_out, torch.full((3, 2), math.nan), torch.full((2, 2), math.inf)])
    c = metrics.coverage(held_out, samples, 1e-6)
    assert c["recall"] == 1.0 and c["mean"] == 0.0
    assert metrics.coverage(held_out, samples[10:], 1.0)["recall"] == 0.0  # nothing finite covers nothing
    with pytest.raises(ValueError, match="same D"):
        metrics.coverage(held_out, torch.randn(4, 3), 1.0)
    with pytest.raises(ValueError, match="radius"):
        metrics.coverage(held_out, samples, 0.0)
    with pytest.raises(ValueError, match="held_out"):
        metrics.coverage(torch.full((2, 2), math.nan), samples, 1.0)
    with pytest.raises(ValueError, match="held_out"):
        metrics.coverage(held_out[:0], samples, 1.0)


def test_ks_two_sample_matches_scipy(gen):
    stats = pytest.importorskip("scipy.stats")
    a = torch.randn(300, generator=gen, dtype=torch.float64)
    b = 0.3 + 1.2 * torch.randn(211, generator=gen, dtype=torch.float64)
    b[::7] = a[: len(b[::7])]  # ties across the samples
    assert metrics.ks_two_sample(a, b) == pytest.approx(stats.ks_2samp(a.numpy(), b.numpy()).statistic)
    assert metrics.ks_two_sample(a, a) == 0.0
    assert metrics.ks_two_sample(a, torch.tensor([math.nan])) == 1.0


def test_curve_parameters_recover_the_generating_parameters(gen):
    angle = 2 * math.pi * torch.rand(200, generator=gen, dtype=torch.float64)
    circle = torch.stack([angle.cos(), angle.sin()], 1)
    assert torch.allclose(Circle2D().curve_parameter(1.3 * circle), angle, atol=1e-12)  # off the curve: radial foot
    phi = 2 * math.pi * torch.rand(200, generator=gen, dtype=torch.float64)
    knot = TorusKnot()
    step = 2 * math.pi / knot.reference_points
    error = (knot.curve_parameter(knot.embed(phi)) - phi).abs()
    assert float(torch.minimum(error, 2 * math.pi - error).max()) <= step
    first = torch.stack([angle.cos() - 1.5, angle.sin(), torch.zeros_like(angle)], 1)
    second = torch.stack([angle.cos() + 1.5, torch.zeros_like(angle), angle.sin()], 1)
    two = TwoCircles()
    assert torch.allclose(two.curve_parameter(first), angle, atol=1e-12)
    assert torch.allclose(two.curve_parameter(second), angle + 2 * math.pi, atol=1e-12)
    x1 = torch.randn(100, generator=gen, dtype=torch.float64)
    assert torch.allclose(Line().curve_parameter(torch.stack([x1 + 0.1, x1 - 0.1], 1)), x1, atol=1e-12)
    sine = torch.stack([x1, torch.sin(2 * x1)], 1)
    assert float((Sine().curve_parameter(sine) - x1).abs().max()) <= 12 / 60000
    fading = FadingSquare()
    x, level = fading.sample(50, gen, dtype=torch.float64)
    assert torch.allclose(fading.curve_parameter(x), level[:, 0])
    spiral = ThinSpiral()
    x, u = spiral.sample(100, gen, dtype=torch.float64)
    assert torch.allclose(spiral.curve_parameter(x), u, atol=1e-10)


def test_sample_quality_sees_a_missing_component(gen):
    """Samples exactly on one of two circles: closeness is perfect, coverage and KS are not."""
    data = TwoCircles()
    held_out = data.sample(2000, gen, dtype=torch.float64)
    on_one = held_out[two_first := data.curve_parameter(held_out) < 2 * math.pi]
    assert 0.4 < float(two_first.double().mean()) < 0.6
    half = metrics.sample_quality(data, held_out, on_one, radius=0.1)
    assert half["sample_distance"]["mean"] < 1e-12
    assert half["coverage"]["recall"] == pytest.approx(float(two_first.double().mean()))
    assert half["ks_along_curve"] > 0.4
    full = metrics.sample_quality(data, held_out, data.sample(2000, gen, dtype=torch.float64), radius=0.1)
    assert full["coverage"]["recall"] > 0.99 and full["ks_along_curve"] < 0.05
    with_nan = metrics.sample_quality(data, held_out, torch.cat([on_one, torch.full((5, 3), math.nan)]), radius=0.1)
    assert with_nan["sample_distance"]["nonfinite"] == 5 and math.isfinite(with_nan["sample_distance"]["q90"])


def test_nearest_clean_finds_the_square_position(gen):
    data = SquareWithClutter(size=16, square=5, clutter=0.0)
    position = 11 * torch.rand(30, 2, generator=gen, dtype=torch.float64)
    mse, found = data.nearest_clean(data.render(position))
    spacing = 11 / 44
    # the MSE of partly covered pixels is not exactly the position distance: within one grid step
    assert float((found - position).abs().max()) <= spacing
    assert torch.equal(mse, data.manifold_mse(data.render(position)))
