"""RectangularFlow: its loss against a dense computation (autograd Jacobians + slogdet, torch.distributions),
its gradient in every logdet mode, and a short fit that lowers the exact negative log-likelihood."""

import pytest
import torch
from test_flows import randomise

from mfkernels.models import build_model
from mfkernels.training import TrainConfig, fit

SMALL = dict(features=4, manifold_dim=2, num_layers=2, inner_layers=2, hidden_features=16, tail_bound=3.0,
             inner_tail_bound=3.0)


def _model(gen, **options):
    model = build_model("rectangular", **SMALL, **options).double()
    randomise(model, gen, scale=0.2)
    return model


def _dense_nll(model, x):
    """-log N(h(u)) - log|det ∂h/∂u| + ½ log det(JᵀJ), J = ∂f⁻¹(Pad(u))/∂u by autograd per point."""
    u = model.outer(x)[0][:, :2]
    out = []
    for point in u:
        J = torch.autograd.functional.jacobian(lambda v: model.reconstruct(v[None])[0], point, create_graph=True)
        Jh = torch.autograd.functional.jacobian(lambda v: model.inner(v[None])[0][0], point, create_graph=True)
        base = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=x.dtype), torch.eye(2, dtype=x.dtype))
        out.append(-base.log_prob(model.inner(point[None])[0][0]) - torch.linalg.slogdet(Jh).logabsdet
                   + 0.5 * torch.linalg.slogdet(J.T @ J).logabsdet)
    return torch.stack(out).mean(), (x - model.reconstruct(u)).square().sum(-1).mean()


def test_exact_loss_and_its_gradient_match_the_dense_route(gen):
    model = _model(gen, logdet="exact", beta=2.5)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    loss, terms = model.loss(x)
    nll, reconstruction = _dense_nll(model, x)
    torch.testing.assert_close(terms["nll"], nll.detach())
    torch.testing.assert_close(terms["reconstruction"], reconstruction.detach())
    torch.testing.assert_close(loss, nll + 2.5 * reconstruction)
    params = list(model.parameters())
    ours = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    dense = torch.autograd.grad(nll + 2.5 * reconstruction, params, allow_unused=True, materialize_grads=True)
    for a, b in zip(ours, dense):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    assert sum(float(g.abs().sum()) for g in ours) > 0


@pytest.mark.parametrize("logdet", ["stochastic", "none"])
def test_other_modes_leave_the_volume_out_of_the_value(logdet, gen):
    model = _model(gen, logdet=logdet, beta=0.5)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    loss, terms = model.loss(x)
    exact = _model(torch.Generator().manual_seed(1234), logdet="exact", beta=0.5)
    exact.load_state_dict(model.state_dict())
    _, exact_terms = exact.loss(x)
    torch.testing.assert_close(terms["nll_without_log_volume"], exact_terms["nll"] - exact_terms["log_volume"])
    torch.testing.assert_close(loss, terms["nll_without_log_volume"] + 0.5 * terms["reconstruction"])
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True, materialize_grads=True)
    assert all(torch.isfinite(g).all() for g in grads)


def test_config_is_checked():
    with pytest.raises(ValueError, match="logdet"):
        build_model("rectangular", logdet="approximate")
    with pytest.raises(ValueError, match="probes"):
        build_model("rectangular", probes=0)


def test_exact_training_lowers_the_exact_nll(tmp_path):
    from mfkernels.data import VonMisesCircle

    x, _ = VonMisesCircle().sample(256, torch.Generator().manual_seed(0))
    model = build_model("rectangular", features=2, manifold_dim=1, num_layers=2, inner_layers=1, hidden_features=16)
    before = -model.log_prob(x).mean()
    fit(model, x, TrainConfig(steps=60, batch_size=64, lr=3e-3, seed=0, out_dir=str(tmp_path), progress=False))
    after = -model.eval().log_prob(x).mean()
    assert after < before - 0.2, (float(before), float(after))
