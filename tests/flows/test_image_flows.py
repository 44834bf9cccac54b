"""Image flow layers: Squeeze, channel-mask couplings with the ConvNet conditioner, Permutation over
channels, and Flow as a density. Oracles: explicit pixel indexing, dense Jacobians, nflows' image
spline coupling, torch.distributions."""

from __future__ import annotations

import pytest
import torch
from test_flows import check_same_maps, dense_jacobian, randomise

from mfkernels import flows
from mfkernels.ops import affine_coupling


def test_squeeze_moves_each_2x2_block_into_channels(gen):
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64, generator=gen)
    z, logabsdet = flows.Squeeze()(x)
    assert z.shape == (2, 12, 2, 3)
    for c in range(3):
        for i in range(2):
            for j in range(2):
                torch.testing.assert_close(z[:, 4 * c + 2 * i + j], x[:, c, i::2, j::2], rtol=0, atol=0)
    assert torch.equal(logabsdet, torch.zeros(2, dtype=torch.float64))
    x_back, inverse_logabsdet = flows.Squeeze().inverse(z)
    assert torch.equal(x_back, x) and torch.equal(inverse_logabsdet, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="divisible by 2"):
        flows.Squeeze()(torch.zeros(1, 1, 3, 4))


def image_stack(context_features: int = 0) -> flows.Sequential:
    """Squeeze -> ActNorm -> affine coupling -> channel permutation -> spline coupling on 1x8x8 images."""
    shape = (4, 4, 4)
    return flows.Sequential(
        flows.Squeeze(),
        flows.ActNorm(4),
        flows.AffineCoupling(shape, mode="softclamp", context_features=context_features, hidden_features=8),
        flows.Permutation(4, "random", seed=1, dim=1),
        flows.RQSplineCoupling(shape, num_bins=4, tail_bound=2.0, mask=torch.tensor([True, False, True, False]),
                               context_features=context_features, hidden_features=8),
        flows.AffineCoupling(shape, mode="volume_preserving", mask=torch.tensor([False, True, True, False]),
                             context_features=context_features, hidden_features=8),
    ).double()


@pytest.mark.parametrize("context_features", [0, 3])
def test_image_stack_is_invertible_and_logabsdet_matches_dense_jacobian(context_features, gen):
    flow = image_stack(context_features)
    randomise(flow, gen, scale=0.2)
    x = 1.5 * torch.randn(3, 1, 8, 8, dtype=torch.float64, generator=gen)
    context = torch.randn(3, context_features, dtype=torch.float64, generator=gen) if context_features else None
    z, logabsdet = flow(x, context)
    assert z.shape == (3, 4, 4, 4)
    x_back, inverse_logabsdet = flow.inverse(z, context)
    torch.testing.assert_close(x_back, x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(inverse_logabsdet, -logabsdet)
    for b in range(3):
        ctx = None if context is None else context[b : b + 1]
        torch.testing.assert_close(logabsdet[b], torch.linalg.slogdet(dense_jacobian(flow, x[b], ctx)).logabsdet)
    if context_features:
        assert not torch.allclose(flow(x, context + 1.0)[0], z), "the context must change the transform"


def test_image_affine_coupling_equals_the_op_on_its_channels(gen):
    layer = flows.AffineCoupling((4, 2, 2), mode="exp", hidden_features=8).double()
    randomise(layer, gen)
    x = torch.randn(5, 4, 2, 2, dtype=torch.float64, generator=gen)
    z, logabsdet = layer(x)
    x_id, x_tr = x[:, ::2], x[:, 1::2]  # alternating channel mask: even channels pass through
    shift, scale = layer.conditioner(x_id).chunk(2, dim=1)
    y_tr, expected = affine_coupling(x_tr, shift, scale, mode="exp")
    torch.testing.assert_close(z[:, ::2], x_id, rtol=0, atol=0)
    torch.testing.assert_close(z[:, 1::2], y_tr)
    torch.testing.assert_close(logabsdet, expected)


def test_image_spline_coupling_equals_nflows_image_coupling(gen):
    """nflows' PiecewiseRationalQuadraticCouplingTransform on 4-D inputs with our conv net as its
    transform net: an independent statement of the channel split and the parameter layout."""
    coupling = pytest.importorskip("nflows.transforms.coupling")
    mask = torch.tensor([True, False, False, True])  # ours: True = identity channel
    ours = flows.RQSplineCoupling((4, 3, 5), num_bins=6, tail_bound=2.5, mask=mask, hidden_features=8).double()
    randomise(ours, gen)
    theirs = coupling.PiecewiseRationalQuadraticCouplingTransform(
        mask=(~mask).int(), transform_net_create_fn=lambda n_in, n_out: ours.conditioner, num_bins=6,
        tails="linear", tail_bound=2.5)
    check_same_maps(ours, theirs, 2 * torch.randn(4, 4, 3, 5, dtype=torch.float64, generator=gen))


def test_flow_log_prob_matches_torch_distributions(gen):
    """Flow(ActNorm) is the Gaussian N(-t e^-s, e^-2s) per feature: compare with torch.distributions."""
    flow = flows.Flow(flows.ActNorm(3).double(), 3).eval()  # eval: no data-dependent re-initialisation
    randomise(flow, gen, scale=0.7)
    s, t = flow.transform.log_scale.detach(), flow.transform.shift.detach()
    x = torch.randn(10, 3, dtype=torch.float64, generator=gen)
    expected = torch.distributions.Normal(-t * torch.exp(-s), torch.exp(-s)).log_prob(x).sum(-1)
    torch.testing.assert_close(flow.log_prob(x), expected)


def test_image_flow_log_prob_and_tempered_samples(gen):
    flow = flows.Flow(image_stack(), (4, 4, 4)).eval()  # base shape: after the squeeze
    randomise(flow, gen, scale=0.2)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=gen)
    z, logabsdet = flow.transform(x)
    base = torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(-1)
    torch.testing.assert_close(flow.log_prob(x), base + logabsdet)
    samples = flow.sample(6, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (6, 1, 8, 8) and samples.dtype == torch.float64
    z_back, _ = flow.transform(samples)
    expected_z = 0.5 * torch.randn(6, 4, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(z_back, expected_z, rtol=1e-9, atol=1e-9)


def test_image_coupling_errors():
    with pytest.raises(ValueError, match=r"'mask' must be a \(4,\) bool tensor over the channels"):
        flows.AffineCoupling((4, 2, 2), mask=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="'features' must be an int"):
        flows.AffineCoupling((4, 2))
    with pytest.raises(ValueError, match=r"expected inputs \(B, 4, 2, 2\)"):
        flows.AffineCoupling((4, 2, 2))(torch.zeros(1, 4, 3, 3))
    with pytest.raises(ValueError, match="expected a context of 2 features"):
        flows.RQSplineCoupling((2, 2, 2), context_features=2)(torch.zeros(1, 2, 2, 2))


def test_channel_lulinear_is_a_1x1_convolution(gen):
    """LULinear(feature_dim=1) on (B, C, H, W) = conv2d with the (C, C, 1, 1) kernel W; log|det| = H·W·log|det W|."""
    layer = flows.LULinear(3, seed=2, feature_dim=1).double()
    randomise(layer, gen, scale=0.3)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=gen)
    z, logabsdet = layer(x)
    W = layer.weight()
    torch.testing.assert_close(z, torch.nn.functional.conv2d(x, W[:, :, None, None], layer.bias))
    torch.testing.assert_close(logabsdet, torch.full((2,), 20 * float(torch.linalg.slogdet(W).logabsdet),
                                                     dtype=torch.float64))
    x_back, inverse_logabsdet = layer.inverse(z)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(inverse_logabsdet, -logabsdet)
    with pytest.raises(ValueError, match="expected 'x' with 3 features in dim 1"):
        layer(torch.zeros(2, 4, 4, 5))


def multiscale(gen, context_features: int = 0) -> flows.MultiScaleFlow:
    flow = flows.MultiScaleFlow((1, 8, 8), levels=2, steps=2, hidden_channels=8, seed=3,
                                context_features=context_features).double()
    flow(torch.randn(16, 64, dtype=torch.float64, generator=gen), torch.randn(16, context_features,
                                                                              dtype=torch.float64, generator=gen))
    randomise(flow, gen, scale=0.1)  # after ActNorm's data-dependent initialisation
    return flow.eval()


@pytest.mark.parametrize("context_features", [0, 2])
def test_multiscale_flow_is_invertible_with_the_dense_logabsdet(context_features, gen):
    flow = multiscale(gen, context_features)
    x = torch.randn(3, 64, dtype=torch.float64, generator=gen)
    context = torch.randn(3, context_features, dtype=torch.float64, generator=gen)
    z, logabsdet = flow(x, context)
    assert z.shape == (3, 64)
    x_back, inverse_logabsdet = flow.inverse(z, context)
    torch.testing.assert_close(x_back, x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(inverse_logabsdet, -logabsdet)
    for b in range(3):
        torch.testing.assert_close(logabsdet[b], torch.linalg.slogdet(
            dense_jacobian(flow, x[b], context[b: b + 1])).logabsdet)


def test_multiscale_flow_factors_out_half_the_channels_after_the_first_level(gen):
    """z = (the last level's 32 coordinates, then the 32 split off after level 1): the split-off
    part depends only on level 1, so changing the last level's parameters leaves it alone."""
    flow = multiscale(gen)
    x = torch.randn(4, 64, dtype=torch.float64, generator=gen)
    z = flow(x)[0]
    with torch.no_grad():
        for p in flow.levels[1].parameters():
            p.add_(0.3)
    z2 = flow(x)[0]
    torch.testing.assert_close(z2[:, 32:], z[:, 32:], rtol=0, atol=0)
    assert not torch.allclose(z2[:, :32], z[:, :32])
    with pytest.raises(ValueError, match=r"expected 'x' of shape \(B, 64\)"):
        flow(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*levels"):
        flows.MultiScaleFlow((1, 6, 6), levels=2)
