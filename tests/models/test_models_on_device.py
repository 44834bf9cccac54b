"""Every model on a GPU against the same model (same weights) on the CPU, float64: log_prob, encode,
decode, project and the parameter gradients of the mean log-likelihood, plus M-flow's exact Gram
density (paper 000 eq. 16) through the batched tangents. The CPU model is the oracle (its ops are
checked against torch.distributions, nflows and dense algebra elsewhere); this file checks that the
CUDA kernels and every layer's device handling compute the same functions. Skipped without a GPU."""

import copy

import pytest
import torch
from conftest import DEVICES
from test_flows import randomise
from test_models import SMALL, _model

from mfkernels.manifold import manifold_log_prob
from mfkernels.models import MODELS, build_model

GPU = [d for d in DEVICES if not isinstance(d, str)]  # the cuda param (skips without a usable GPU)


@pytest.mark.parametrize("device", GPU)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_on_gpu_matches_the_cpu(name, device, gen):
    if name == "nif":  # the closed-form marginal (eq 41): the ELBO's log_prob is a sampled estimate
        cpu = build_model("nif", **{**SMALL, "inner_layers": 0, "objective": "marginal"}).double().eval()
        randomise(cpu, gen, scale=0.2)
    else:
        cpu = _model(name, gen).eval()
    gpu = copy.deepcopy(cpu).to(device)
    x = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    xg = x.to(device)
    for method in ("log_prob", "encode", "project"):
        want = getattr(cpu, method)(x)
        got = getattr(gpu, method)(xg)
        torch.testing.assert_close(got.cpu(), want, rtol=1e-7, atol=1e-8, msg=f"{name}.{method}")
    latent = cpu.encode(x).detach()
    if name == "chart":  # decode takes the chart index too
        charts = torch.zeros(len(latent), dtype=torch.long)
        want, got = cpu.decode(latent, charts), gpu.decode(latent.to(device), charts.to(device))
    else:
        want, got = cpu.decode(latent), gpu.decode(latent.to(device))
    torch.testing.assert_close(got.cpu(), want, rtol=1e-7, atol=1e-8, msg=f"{name}.decode")
    lp_cpu, lp_gpu = cpu.log_prob(x).mean(), gpu.log_prob(xg).mean()
    if not lp_cpu.requires_grad:  # M-flow's exact manifold density is for evaluation (no graph)
        assert not lp_gpu.requires_grad
        return
    grads_cpu = torch.autograd.grad(lp_cpu, [p for p in cpu.parameters() if p.requires_grad], allow_unused=True)
    grads_gpu = torch.autograd.grad(lp_gpu, [p for p in gpu.parameters() if p.requires_grad], allow_unused=True)
    for (pname, _), a, b in zip([(n, p) for n, p in cpu.named_parameters() if p.requires_grad], grads_gpu, grads_cpu):
        if b is None:
            assert a is None or not a.any(), pname
            continue
        torch.testing.assert_close(a.cpu(), b, rtol=1e-6, atol=1e-8, msg=f"{name}: gradient of {pname}")


@pytest.mark.parametrize("device", GPU)
def test_mflow_gram_density_on_gpu_matches_the_cpu(device, gen):
    cpu = _model("mflow", gen).eval()
    gpu = copy.deepcopy(cpu).to(device)
    x = cpu.decode(torch.randn(32, 2, generator=gen, dtype=torch.float64)).detach()
    want = manifold_log_prob(cpu, x)
    got = manifold_log_prob(gpu, x.to(device))
    assert torch.isfinite(want).all()
    torch.testing.assert_close(got.cpu(), want, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("device", GPU)
def test_dnf_training_steps_on_gpu_follow_the_cpu(device, gen):
    """Three Adam steps of the DNF likelihood (no noise) from the same weights on both devices."""
    cpu = _model("dnf", gen, noise_std=1e-3, penalty=0.0)
    gpu = copy.deepcopy(cpu).to(device)
    x = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    for model, data in ((cpu, x), (gpu, x.to(device))):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(3):
            opt.zero_grad()
            (-model.log_prob(data).mean()).backward()
            opt.step()
    for (name, a), b in zip(gpu.state_dict().items(), cpu.state_dict().values()):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-6, atol=1e-9, msg=name)
