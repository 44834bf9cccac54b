"""The models: shared API, loss terms against independent dense computations, densities, configs."""

import math

import pytest
import torch
from test_flows import randomise

from mfkernels.models import MODELS, build_model
from mfkernels.training import fit

SMALL = dict(features=4, manifold_dim=2, num_layers=2, inner_layers=2, hidden_features=16, tail_bound=3.0,
             inner_tail_bound=3.0)


def _model(name, gen, **options):
    if name == "nif":  # SMALL has an inner flow: the ELBO objective (the closed-form marginal needs none)
        options.setdefault("objective", "elbo")
    model = build_model(name, **SMALL, **options).double()
    randomise(model, gen, scale=0.2)
    return model


def _dense_latent_log_density(model, x, v_std):
    """log N(h(u)) + log N(v; 0, v_std²) + log|det ∂(h(u), v)/∂x| from an autograd Jacobian of the
    whole map x -> (u', v) and torch.distributions: independent of the layers' logabsdet bookkeeping."""
    d = model.config.manifold_dim

    def latent(point):
        z, _ = model.outer(point[None])
        u_prime, _ = model.inner(z[:, :d])
        return torch.cat([u_prime, z[:, d:]], dim=1)[0]

    out = []
    for point in x:
        J = torch.autograd.functional.jacobian(latent, point)
        w = latent(point)
        base = torch.distributions.Normal(0.0, 1.0).log_prob(w[:d]).sum()
        off = torch.distributions.Normal(0.0, v_std).log_prob(w[d:]).sum()
        out.append(base + off + torch.linalg.slogdet(J).logabsdet)
    return torch.stack(out)


def test_dnf_loss_terms_match_a_dense_hand_computation(gen):
    model = _model("dnf", gen, noise_std=0.2, penalty=2.5)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    torch.manual_seed(7)
    loss, terms = model.loss(x)
    torch.manual_seed(7)
    x_noisy = x + 0.2 * torch.randn_like(x)
    nll = -_dense_latent_log_density(model, x_noisy, 0.2).mean()
    z, _ = model.outer(x_noisy)
    padded = torch.cat([z[:, :2], torch.zeros(6, 2, dtype=torch.float64)], 1)
    # reconstruction through the inverse: solve f(x_hat) = padded by checking the round trip instead
    x_hat = model.reconstruct(z[:, :2])
    torch.testing.assert_close(model.outer(x_hat)[0], padded)
    reconstruction = (x - x_hat).square().sum(1).mean()
    torch.testing.assert_close(terms["nll"], nll.detach())
    torch.testing.assert_close(terms["reconstruction"], reconstruction.detach())
    torch.testing.assert_close(loss, nll + 2.5 * reconstruction)


def test_dnf_deflated_density_and_the_sigma_over_3_rule(gen):
    model = _model("dnf", gen, noise_std=3.0)
    x = torch.randn(40, 4, generator=gen, dtype=torch.float64)
    log_p = model.log_prob(x)
    _, v, _ = model.split(x)
    inside = v.norm(dim=1) <= 3.0 / 3
    assert inside.any() and (~inside).any()
    # deflation divides by q_σ(x|x) = (2πσ²)^(-(D-d)/2), D - d = 2
    expected = _dense_latent_log_density(model, x, 3.0) + 0.5 * 2 * math.log(2 * math.pi * 9.0)
    torch.testing.assert_close(log_p[inside], expected[inside].detach())
    assert torch.isneginf(log_p[~inside]).all()
    gram = build_model("dnf", **SMALL, density="gram").double()
    gram.load_state_dict(model.state_dict())
    assert torch.isfinite(gram.log_prob(x)).all()


def test_pie_full_density_and_standard_flow_density(gen):
    pie = _model("pie", gen, off_manifold_std=0.3, density="full")
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(pie.log_prob(x), _dense_latent_log_density(pie, x, 0.3).detach())
    loss, terms = pie.loss(x)
    torch.testing.assert_close(loss, -pie.log_prob(x).mean())

    flow = _model("standard", gen)
    dense = []
    for point in x:
        J = torch.autograd.functional.jacobian(lambda p: flow.flow(p[None])[0][0], point)
        z = flow.encode(point[None])[0]
        normal = torch.distributions.MultivariateNormal(
            torch.zeros(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64)
        )
        dense.append(normal.log_prob(z) + torch.linalg.slogdet(J).logabsdet)
    torch.testing.assert_close(flow.log_prob(x), torch.stack(dense).detach())
    torch.testing.assert_close(flow.decode(flow.encode(x)), x)


def test_mflow_phases_train_one_flow_each(gen):
    model = _model("mflow", gen, schedule="alternate", phase_steps=3)
    x = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    phases = []
    for step in range(7):
        model.begin_step(step)
        phases.append(model.phase)
    assert phases == ["manifold"] * 3 + ["density"] * 3 + ["manifold"]
    for phase, trained, frozen in (("manifold", model.outer, model.inner), ("density", model.inner, model.outer)):
        model.zero_grad(set_to_none=True)
        model.phase = phase
        loss, terms = model.loss(x)
        loss.backward()
        assert all(p.grad is None for p in frozen.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters())
        assert set(terms) == ({"reconstruction"} if phase == "manifold" else {"nll"})
    seq = build_model("mflow", **SMALL, schedule="sequential", manifold_steps=5)
    seq.begin_step(4)
    assert seq.phase == "manifold"
    seq.begin_step(5)
    assert seq.phase == "density"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shared_api_shapes_and_config_round_trip(name, gen):
    model = _model(name, gen).eval()
    x = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    latent = model.encode(x)
    assert latent.shape == (9, model.latent_dim)
    assert model.decode(latent).shape == (9, 4)
    assert model.project(x).shape == (9, 4)
    assert model.sample(11, temperature=0.5).shape == (11, 4)
    assert model.log_prob(x).shape == (9,)
    assert model.log_prob(x[:0]).shape == (0,) and model.project(x[:1]).shape == (1, 4)
    loss, terms = model.loss(x)
    assert loss.dim() == 0 and all(t.dim() == 0 for t in terms.values())
    rebuilt = build_model(name, model.config.to_dict()).double()
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval().project(x), model.project(x))
    # temperature 0 puts every sample at the image of the latent origin
    zero = model.sample(3, temperature=0.0, **({"noise_scale": 0.0} if name == "nif" else {}))
    if name == "chart":  # one origin per chart: each sample is the image of z = 0 in its own chart
        K = model.config.num_charts
        origins = model.decode(torch.zeros(K, model.latent_dim, dtype=torch.float64), torch.arange(K))
        assert torch.cdist(zero, origins).min(1).values.max() < 1e-9
    else:
        torch.testing.assert_close(zero, model.decode(torch.zeros(1, model.latent_dim,
                                                                  dtype=torch.float64)).expand(3, 4))


def test_projection_is_idempotent_after_training(gen):
    from mfkernels.data import ThinSpiral

    data, _ = ThinSpiral().sample(2000, gen)
    model = build_model("dnf", features=2, manifold_dim=1, num_layers=3, inner_layers=1, hidden_features=32)
    fit(model, data, steps=150, batch_size=100, progress=False)
    x = data[:200]
    with torch.no_grad():
        once = model.project(x)
        twice = model.project(once)
    torch.testing.assert_close(twice, once, atol=1e-4, rtol=1e-4)
    assert float((once - x).norm(dim=1).mean()) < float(x.norm(dim=1).mean())


def test_bad_configs_raise_clear_errors():
    with pytest.raises(ValueError, match="manifold_dim"):
        build_model("dnf", features=2, manifold_dim=3)
    with pytest.raises(ValueError, match="noise_std"):
        build_model("dnf", noise_std=0.0)
    with pytest.raises(ValueError, match="schedule"):
        build_model("mflow", schedule="sometimes")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vae")
    with pytest.raises(ValueError, match="unknown option"):
        build_model("dnf", {"features": 2, "bogus": 1})
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 2\)"):
        build_model("dnf").log_prob(torch.zeros(3, 5))
