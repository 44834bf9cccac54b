"""mfkernels.ops.lowrank_gaussian_log_prob against torch.distributions (LowRankMultivariateNormal
and the dense MultivariateNormal, float64), its twin, gradcheck, forward AD, vmap, opcheck,
torch.compile, error messages and the NaN policy."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import LowRankMultivariateNormal, MultivariateNormal

from mfkernels import reference
from mfkernels.ops import lowrank_gaussian_log_prob


def problem(B, D, K, *, dtype=torch.float64, device="cpu", gen=None, batch=None):
    batch = (B,) if batch is None else batch
    x = torch.randn(*batch, D, dtype=dtype, generator=gen).to(device)
    loc = torch.randn(D, dtype=dtype, generator=gen).to(device)
    W = (torch.randn(D, K, dtype=dtype, generator=gen) / K**0.5).to(device)
    diag = (0.3 + torch.rand(D, dtype=dtype, generator=gen)).to(device)
    return x, loc, W, diag


@pytest.mark.parametrize("B,D,K", [(5, 7, 2), (1, 4, 1), (0, 6, 3), (9, 30, 30), (3, 5, 8)])
def test_values_and_gradients_match_torch_distributions(B, D, K, device, gen):
    x, loc, W, diag = (t.requires_grad_() for t in problem(B, D, K, device=device, gen=gen))
    ours = lowrank_gaussian_log_prob(x, loc, W, diag)
    # (argument validation in torch.distributions cannot handle an empty batch)
    theirs = LowRankMultivariateNormal(loc, W, diag, validate_args=False).log_prob(x)
    dense = MultivariateNormal(loc, W @ W.T + torch.diag(diag), validate_args=False).log_prob(x)
    assert ours.shape == (B,)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(ours, dense, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(ours, reference.lowrank_gaussian_log_prob(x, loc, W, diag), rtol=1e-12, atol=1e-10)
    weights = torch.randn(B, dtype=x.dtype, generator=gen).to(device)
    g_ours = torch.autograd.grad((ours * weights).sum(), (x, loc, W, diag), allow_unused=True)
    g_theirs = torch.autograd.grad((theirs * weights).sum(), (x, loc, W, diag), allow_unused=True)
    for name, a, b in zip(("x", "loc", "W", "diag"), g_ours, g_theirs):
        b = torch.zeros_like(a) if b is None else b  # torch leaves unused grads undefined at B = 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"gradient of {name}")


def test_broadcasting_batch_dims_and_non_contiguous_input(device, gen):
    x, loc, W, diag = problem(6, 5, 2, device=device, gen=gen, batch=(2, 3))
    per_row_loc = torch.randn(2, 3, 5, dtype=x.dtype, generator=gen).to(device)
    weights = torch.randn(2, 3, dtype=x.dtype, generator=gen).to(device)  # signed: both backward branches
    for mean in (loc, per_row_loc, loc[None, None], per_row_loc[:1], loc[None, None, :1]):
        mean = mean.detach().requires_grad_()
        expected = LowRankMultivariateNormal(mean.expand(x.shape), W, diag).log_prob(x)
        ours = lowrank_gaussian_log_prob(x, mean, W, diag)
        torch.testing.assert_close(ours, expected)
        # a loc shared by rows gets its gradient reduced inside the op: same as autograd's broadcasting
        torch.testing.assert_close(torch.autograd.grad((ours * weights).sum(), mean)[0],
                                   torch.autograd.grad((expected * weights).sum(), mean)[0])
    scalar_diag = torch.tensor([0.7], dtype=x.dtype, device=device)
    torch.testing.assert_close(lowrank_gaussian_log_prob(x, loc, W, scalar_diag),
                               LowRankMultivariateNormal(loc, W, scalar_diag.expand(5)).log_prob(x))
    xt = torch.randn(5, 4, dtype=x.dtype, generator=gen).to(device).T  # (4, 5), non-contiguous
    Wt = torch.randn(2, 5, dtype=x.dtype, generator=gen).to(device).T
    torch.testing.assert_close(lowrank_gaussian_log_prob(xt, loc, Wt, diag),
                               LowRankMultivariateNormal(loc, Wt, diag).log_prob(xt))


def test_float32_error_is_within_conditioning_bound(device, gen):
    """float32 vs the float64 result: the error is a few eps of the terms summed (the quadratic form
    and the log-determinants, each O(D)), amplified by cond(C) <= 1 + |W^T D^-1 W| (here ~10)."""
    x, loc, W, diag = problem(64, 200, 16, device=device, gen=gen)
    exact = lowrank_gaussian_log_prob(x, loc, W, diag)
    single = lowrank_gaussian_log_prob(*(t.float() for t in (x, loc, W, diag))).double()
    scale = exact.abs() + 200
    assert ((single - exact).abs() / scale).max() < 50 * torch.finfo(torch.float32).eps


def test_gradcheck_and_forward_ad(device, gen):
    x, loc, W, diag = (t.requires_grad_() for t in problem(4, 6, 3, gen=gen, device=device))
    assert torch.autograd.gradcheck(lowrank_gaussian_log_prob, (x, loc, W, diag), check_batched_grad=True)
    assert torch.autograd.gradcheck(lowrank_gaussian_log_prob, (x, loc, W, diag), check_forward_ad=True,
                                    check_backward_ad=False, check_undefined_grad=False)


def test_jvp_jacfwd_and_vmap_match_the_twin(device, gen):
    x, loc, W, diag = problem(4, 6, 3, gen=gen, device=device)
    tangents = tuple(torch.randn_like(t) for t in (x, loc, W, diag))
    _, ours = torch.func.jvp(lowrank_gaussian_log_prob, (x, loc, W, diag), tangents)
    _, twin = torch.func.jvp(reference.lowrank_gaussian_log_prob, (x, loc, W, diag), tangents)
    torch.testing.assert_close(ours, twin)
    for argnum in range(4):
        torch.testing.assert_close(torch.func.jacfwd(lowrank_gaussian_log_prob, argnum)(x, loc, W, diag),
                                   torch.func.jacrev(reference.lowrank_gaussian_log_prob, argnum)(x, loc, W, diag))
    xs = torch.randn(3, 4, 6, dtype=x.dtype, generator=gen).to(device)
    Ws = torch.randn(3, 6, 3, dtype=x.dtype, generator=gen).to(device)
    torch.testing.assert_close(torch.func.vmap(lowrank_gaussian_log_prob, (0, None, None, None))(xs, loc, W, diag),
                               reference.lowrank_gaussian_log_prob(xs, loc, W, diag))
    per_W = torch.func.vmap(lowrank_gaussian_log_prob, (None, None, 0, None))(x, loc, Ws, diag)
    torch.testing.assert_close(per_W, torch.stack([reference.lowrank_gaussian_log_prob(x, loc, w, diag) for w in Ws]))
    grads = torch.func.vmap(torch.func.grad(lambda w: lowrank_gaussian_log_prob(x, loc, w, diag).sum()))(Ws)
    expected = torch.func.vmap(torch.func.grad(lambda w: reference.lowrank_gaussian_log_prob(x, loc, w, diag).sum()))(
        Ws
    )
    torch.testing.assert_close(grads, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_all_kernels(dtype, device, gen):
    x, loc, W, diag = problem(5, 7, 3, dtype=dtype, device=device, gen=gen)
    loc_rows = loc.expand(5, 7).contiguous()
    _, s, v, cinv = torch.ops.mfkernels.lowrank_gaussian_log_prob_forward(x, loc_rows, W, diag)
    grad = torch.randn(5, dtype=dtype, generator=gen).to(device)
    cases = [
        (torch.ops.mfkernels.lowrank_gaussian_log_prob_forward, (x, loc_rows, W, diag)),
        (torch.ops.mfkernels.lowrank_gaussian_log_prob_backward, (grad, W, diag, s, v, cinv)),
        (torch.ops.mfkernels.lowrank_gaussian_log_prob_jvp,
         (W, diag, s, v, cinv, torch.randn_like(x), torch.randn_like(W), torch.randn_like(diag))),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_torch_compile_fullgraph_matches_eager(device, gen):
    def loss(x, loc, W, diag):
        return lowrank_gaussian_log_prob(2.0 * x, loc, W, diag).sum()

    compiled = torch.compile(loss, fullgraph=True)
    args = [t.requires_grad_() for t in problem(6, 9, 2, device=device, gen=gen)]
    value = compiled(*args)
    grads = torch.autograd.grad(value, args)
    expected = loss(*args)
    expected_grads = torch.autograd.grad(expected, args)
    torch.testing.assert_close(value, expected)
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b)


def test_bad_inputs_raise_clear_errors(device, gen):
    x, loc, W, diag = problem(3, 4, 2, device=device, gen=gen)
    with pytest.raises(ValueError, match=r"'W' must have shape \(D, K\) = \(4, K\)"):
        lowrank_gaussian_log_prob(x, loc, W[:3], diag)
    with pytest.raises(ValueError, match=r"'diag' must have shape \(4,\)"):
        lowrank_gaussian_log_prob(x, loc, W, diag[:3])
    with pytest.raises(ValueError, match="'diag' must be positive"):
        lowrank_gaussian_log_prob(x, loc, W, -diag)
    with pytest.raises(ValueError, match="'loc' of shape \\(3,\\) must broadcast"):
        lowrank_gaussian_log_prob(x, loc[:3], W, diag)
    with pytest.raises(TypeError, match="'W' has dtype torch.float32"):
        lowrank_gaussian_log_prob(x, loc, W.float(), diag)
    with pytest.raises(RuntimeError, match="'capacitance_inverse' must have shape"):
        torch.ops.mfkernels.lowrank_gaussian_log_prob_backward(x[:, 0], W, diag, x, x[:, :2], W[:3])


def test_non_finite_parameters_give_nan_not_garbage(device, gen):
    x, loc, W, diag = problem(3, 4, 2, device=device, gen=gen)
    W = W.clone()
    W[1, 0] = float("nan")
    assert torch.isnan(lowrank_gaussian_log_prob(x, loc, W, diag)).all()
    x = x.clone()
    x[0, 2] = float("inf")
    out = lowrank_gaussian_log_prob(x, loc, W.nan_to_num(0.0), diag)
    assert not torch.isfinite(out[0]) and torch.isfinite(out[1:]).all()
