"""Pixel rejection and hierarchical flows (paper 002): the penalty, the loss against dense Jacobians,
sampling on the manifold, frozen stages, the clutter data."""

import pytest
import torch
from test_flows import randomise
from test_models import _dense_latent_log_density

from mfkernels.data.clutter import SquareWithClutter
from mfkernels.models import build_model, penalties
from mfkernels.training import fit

D64 = torch.float64
SMALL = dict(features=5, manifold_dim=2, num_layers=2, hidden_features=16, tail_bound=3.0, inner_tail_bound=3.0)


def test_huber_is_eq_2_by_hand_and_tends_to_half_the_mse():
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0]], dtype=D64)
    reconstruction = torch.tensor([[0.05, -0.3, 1.0, -0.1]], dtype=D64)
    delta = 0.1
    by_hand = (0.5 * 0.05**2 + 0.1 * (0.3 - 0.05) + 0.1 * (1.0 - 0.05) + 0.1 * (0.1 - 0.05)) / 4
    torch.testing.assert_close(penalties.huber(x, reconstruction, delta), torch.tensor([by_hand], dtype=D64))
    torch.testing.assert_close(penalties.mse(x, reconstruction), reconstruction.square().mean(1))
    torch.testing.assert_close(penalties.huber(x, reconstruction, 1e6), 0.5 * penalties.mse(x, reconstruction))
    # at |x - x̂| = δ both branches meet: value and gradient continuous and finite
    at = torch.tensor([[delta, -delta]], dtype=D64, requires_grad=True)
    value = penalties.huber(torch.zeros(1, 2, dtype=D64), at, delta)
    (grad,) = torch.autograd.grad(value.sum(), at)
    torch.testing.assert_close(value, torch.tensor([0.5 * delta**2], dtype=D64))
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, torch.tensor([[delta, -delta]], dtype=D64) / 2)
    with pytest.raises(ValueError, match="delta"):
        penalties.huber(x, reconstruction, 0.0)
    with pytest.raises(ValueError, match="kind"):
        penalties.penalty("l1", x, reconstruction, 0.1)


@pytest.mark.parametrize("variant", [dict(inner_layers=0), dict(inner_layers=2), dict(inner_layers=2, penalty="mse")])
def test_pr_loss_is_eq_5_against_a_dense_jacobian(variant, gen):
    model = build_model("pr", **SMALL, **variant, delta=0.2, penalty_weight=3.0).double()
    randomise(model, gen, scale=0.2)
    x = torch.randn(6, 5, generator=gen, dtype=D64)
    log_p = _dense_latent_log_density(model, x, 1.0)
    torch.testing.assert_close(model.log_prob(x), log_p)
    u = model.outer(x)[0][:, :2]
    x_hat = model.outer.inverse(torch.cat([u, torch.zeros(6, 3, dtype=D64)], 1))[0]
    residual = (x - x_hat).abs()
    if model.config.penalty == "huber":
        per_pixel = torch.where(residual < 0.2, 0.5 * residual**2, 0.2 * (residual - 0.1))
    else:
        per_pixel = residual**2
    loss, terms = model.loss(x)
    torch.testing.assert_close(loss, -log_p.mean() + 3.0 * per_pixel.mean())
    assert set(terms) == {"nll", "penalty"}


@pytest.mark.parametrize("name,options", [("pr", dict(inner_layers=2)),
                                          ("hierarchical", dict(stage_dims=[3, 2], penalties=["huber", "mse"]))])
def test_samples_lie_on_the_manifold_v_is_zero(name, options, gen):
    model = build_model(name, **SMALL, **options).double()
    randomise(model, gen, scale=0.2)
    x = model.sample(7, generator=gen)
    if name == "pr":
        v = model.split(x)[1]
    else:  # every block's off-manifold part
        u, parts = x, []
        for block in model.blocks:
            u, v_block, _ = block.split(u)
            parts.append(v_block)
        v = torch.cat(parts, 1)
    torch.testing.assert_close(v, torch.zeros_like(v), atol=1e-8, rtol=0)
    torch.testing.assert_close(model.project(x), x, atol=1e-8, rtol=0)


def test_hierarchical_density_against_a_dense_jacobian_of_the_whole_cascade(gen):
    model = build_model("hierarchical", **SMALL, stage_dims=[3, 1]).double()
    randomise(model, gen, scale=0.2)
    x = torch.randn(4, 5, generator=gen, dtype=D64)

    def latent(point):  # x -> (v1, v2, u2): a bijection of R^5
        z1 = model.blocks[0].outer(point[None])[0]
        z2 = model.blocks[1].outer(z1[:, :3])[0]
        return torch.cat([z1[:, 3:], z2[:, 1:], z2[:, :1]], 1)[0]

    expected = torch.stack([torch.distributions.Normal(0.0, 1.0).log_prob(latent(p)).sum()
                            + torch.linalg.slogdet(torch.autograd.functional.jacobian(latent, p)).logabsdet for p in x])
    torch.testing.assert_close(model.log_prob(x), expected)
    loss, terms = model.loss(x)
    assert set(terms) == {"nll", "penalty_1", "penalty_2"}
    torch.testing.assert_close(terms["nll"], -expected.mean())


def test_stagewise_training_freezes_the_other_blocks(gen):
    data = torch.randn(400, 5, generator=gen)
    model = build_model("hierarchical", **SMALL, stage_dims=[3, 1], regime="stagewise", stage_steps=8)
    second = [p.detach().clone() for p in model.blocks[1].parameters()]
    fit(model, data, steps=8, batch_size=50, lr=1e-2, progress=False)  # steps 0-7: block 1 only
    assert all(torch.equal(a, b) for a, b in zip(second, model.blocks[1].parameters()))
    first = [p.detach().clone() for p in model.blocks[0].parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(8, 12):  # block 2, on block 1's projection of the data
        model.begin_step(step)
        optimizer.zero_grad(set_to_none=True)
        loss, terms = model.loss(data[:50])
        loss.backward()
        assert all(p.grad is None for p in model.blocks[0].parameters())
        optimizer.step()
    assert terms["stage"] == 2
    assert all(torch.equal(a, b) for a, b in zip(first, model.blocks[0].parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(second, model.blocks[1].parameters()))
    with torch.no_grad():  # the active block's own pixel-rejection loss on the projected data
        u1 = model.blocks[0].split(data[:50])[0]
        torch.testing.assert_close(model.loss(data[:50])[0], model.blocks[1].loss(u1)[0])


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="penalty"):
        build_model("pr", penalty="l1")
    with pytest.raises(ValueError, match="delta"):
        build_model("pr", delta=0.0)
    with pytest.raises(ValueError, match="d1 > d2"):
        build_model("hierarchical", features=4, stage_dims=[2, 3], penalties=["huber"] * 2, deltas=[0.1] * 2)
    with pytest.raises(ValueError, match="one penalty and one delta"):
        build_model("hierarchical", features=4, stage_dims=[2, 1], penalties=["huber"], deltas=[0.1, 0.1])


def test_clutter_images_and_the_removal_metric(gen):
    data = SquareWithClutter(size=8, square=3, clutter=0.1)
    image = data.render(torch.tensor([[2.0, 4.0], [0.5, 1.25]], dtype=D64))
    torch.testing.assert_close(image.sum(1), torch.full((2,), 9.0, dtype=D64))  # area 3 x 3, all inside
    grid = image[0].reshape(8, 8)
    assert grid[2:5, 4:7].eq(1).all() and grid.sum() == 9
    torch.testing.assert_close(image[1].reshape(8, 8)[0, 1], torch.tensor(0.5 * 0.75, dtype=D64))  # partial pixel
    x, clean, mask = data.sample_with_truth(2000, gen, dtype=D64)
    assert abs(float(mask.double().mean()) - 0.1) < 0.01
    assert torch.equal(x[~mask], clean[~mask]) and torch.equal(x[mask], (clean[mask] < 0.5).double())
    assert data.removed_fraction(clean, clean, mask) == 1.0
    assert data.removed_fraction(x, clean, mask) == 0.0
    # restored = within the absolute tolerance of the clean value; on a blank canvas every residual is 1
    blank, salt = (
        torch.zeros(3, 4, dtype=D64),
        torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [0, 1, 1, 1]], dtype=torch.bool),
    )
    x_blank = salt.double()
    assert data.removed_fraction(0.09 * x_blank, blank, salt) == 1.0
    assert data.removed_fraction(0.11 * x_blank, blank, salt) == 0.0
    assert data.removed_fraction(0.11 * x_blank, blank, salt, tolerance=0.2) == 1.0
    assert data.removed_fraction(torch.tensor([0.0, 0.5, 0.5, 0.05]).expand(3, 4), blank, salt) == 3 / 5
    # a uniform grey haze of 0.15 (an MSE fit's pull at 15 % clutter) restores nothing but moves all halfway
    haze = 0.15 * x_blank
    assert (
        data.removed_fraction(haze, blank, salt) == 0.0
        and data.moved_halfway_fraction(x_blank, haze, blank, salt) == 1.0
    )
    assert data.moved_halfway_fraction(x, clean, clean, mask) == 1.0
    assert data.moved_halfway_fraction(x, x, clean, mask) == 0.0
    assert data.moved_halfway_fraction(x, clean + 0.4 * (x - clean), clean, mask) == 1.0  # 60 % of the way back
    assert data.moved_halfway_fraction(x, clean + 0.6 * (x - clean), clean, mask) == 0.0


def test_pr_on_the_glow_backbone_against_a_dense_jacobian(gen):
    """backbone="glow": the outer flow is the multi-scale image flow on flattened 1 x 4 x 4 images."""
    model = build_model("pr", features=16, manifold_dim=2, inner_layers=0, num_layers=2, hidden_features=8,
                        backbone="glow", image_shape=[1, 4, 4], levels=1, delta=0.3).double()
    from mfkernels.flows import MultiScaleFlow

    assert isinstance(model.outer, MultiScaleFlow)
    randomise(model, gen, scale=0.1)
    x = torch.randn(3, 16, generator=gen, dtype=D64)
    torch.testing.assert_close(model.log_prob(x), _dense_latent_log_density(model, x, 1.0))
    samples = model.sample(4, generator=gen)
    torch.testing.assert_close(model.split(samples)[1], torch.zeros(4, 14, dtype=D64), atol=1e-8, rtol=0)
    with pytest.raises(ValueError, match="image_shape"):
        build_model("pr", features=16, backbone="glow", image_shape=[1, 4, 5])
    with pytest.raises(ValueError, match="backbone"):
        build_model("spread", features=16, backbone="glow", image_shape=[1, 4, 4])


def test_pr_with_a_user_flow_is_a_linear_projection_by_hand(gen):
    """flow = one invertible linear map W: u = (W x)[:d], x̂ = W⁻¹ (u, 0); log p by change of variables."""
    from mfkernels import flows

    layer = flows.LULinear(5, seed=4).double()
    randomise(layer, gen, scale=0.3)
    model = build_model("pr", features=5, manifold_dim=2, inner_layers=0, delta=0.25, penalty_weight=2.0)
    model = type(model)(model.config, flow=layer).double()
    x = torch.randn(6, 5, generator=gen, dtype=D64)
    W, b = layer.weight().detach(), layer.bias.detach()
    z = x @ W.T + b
    x_hat = torch.linalg.solve(W, (torch.cat([z[:, :2], torch.zeros(6, 3, dtype=D64)], 1) - b).T).T
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1) + torch.linalg.slogdet(W).logabsdet
    torch.testing.assert_close(model.log_prob(x), log_p)
    torch.testing.assert_close(model.project(x), x_hat)
    huber = torch.nn.functional.huber_loss(x_hat, x, delta=0.25, reduction="none").mean(1)
    torch.testing.assert_close(model.loss(x)[0], -log_p.mean() + 2.0 * huber.mean())


def test_manifold_coupling_reuses_the_conditioner_and_keeps_the_density_exact(gen):
    """manifold_coupling=True: f ends in a coupling v -> v' given u; the loss inverts it with the forward
    pass's conditioner output. Same loss and gradients as running the conditioner again, the density
    against an autograd Jacobian of x -> (h(u), v), and f(f⁻¹(u, 0)) = (u, 0)."""
    model = build_model("pr", **SMALL, inner_layers=2, delta=0.2, penalty_weight=3.0, manifold_coupling=True).double()
    randomise(model, gen, scale=0.2)
    x = torch.randn(6, 5, generator=gen, dtype=D64)

    def latent(point):
        u, v, _ = model.split(point[None])
        return torch.cat([model.inner(u)[0], v], dim=1)[0]

    dense = []
    for point in x:
        w = latent(point)
        base = torch.distributions.Normal(0.0, 1.0).log_prob(w).sum()
        dense.append(base + torch.linalg.slogdet(torch.autograd.functional.jacobian(latent, point)).logabsdet)
    torch.testing.assert_close(model.log_prob(x), torch.stack(dense))
    # the tail really is a coupling of v given u: the whole split differs from the outer flow's in v only
    z = model.outer(x)[0]
    u, v, _ = model.split(x)
    torch.testing.assert_close(u, z[:, :2])
    assert (v - z[:, 2:]).abs().max() > 1e-3

    params = list(model.parameters())
    reused, terms = model.loss(x)
    again, _ = model.loss(x, reuse_conditioner=False)
    torch.testing.assert_close(reused, again)
    for a, b in zip(torch.autograd.grad(reused, params), torch.autograd.grad(again, params)):
        torch.testing.assert_close(a, b)
    # the penalty is eq 4 on the reconstruction through the tail's inverse
    u_back, v_back, _ = model.split(model.reconstruct(u))
    torch.testing.assert_close(u_back, u)
    torch.testing.assert_close(v_back, torch.zeros_like(v_back))
    calls = []
    hook = model.tail.conditioner.register_forward_hook(lambda *args: calls.append(1))
    model.loss(x)
    assert len(calls) == 1  # forward pass only; the reconstruction reused it
    model.loss(x, reuse_conditioner=False)
    assert len(calls) == 3
    hook.remove()
    with pytest.raises(ValueError, match="manifold_coupling"):
        build_model("pr", features=3, manifold_dim=3, manifold_coupling=True)


def test_the_papers_constructor_form(gen):
    """PixelRejection(flow, d, delta, lam=1.0, penalty=..., density_flow=None), the documented signature."""
    from mfkernels.flows import rq_spline_flow
    from mfkernels.models import PixelRejection

    flow, inner = rq_spline_flow(5, 2, hidden_features=8), rq_spline_flow(2, 1, hidden_features=8)
    model = PixelRejection(flow, 2, 0.3, lam=5.0, penalty="mse", density_flow=inner)
    c = model.config
    assert (c.features, c.manifold_dim, c.delta, c.penalty_weight, c.penalty) == (5, 2, 0.3, 5.0, "mse")
    assert model.outer is flow and model.inner is inner
    x = torch.randn(4, 5, generator=gen)
    u = flow(x)[0][:, :2]
    x_hat = flow.inverse(torch.cat([u, torch.zeros(4, 3)], 1))[0]
    loss, terms = model.loss(x)
    torch.testing.assert_close(terms["penalty"], (x - x_hat).square().mean())
    with pytest.raises(TypeError, match="given twice"):
        PixelRejection(flow, 2, 0.3, flow=flow)
    with pytest.raises(ValueError, match="features=D"):
        PixelRejection(torch.nn.Identity(), 2, 0.3)
    assert PixelRejection(torch.nn.Identity(), 2, 0.3, features=4).config.features == 4
