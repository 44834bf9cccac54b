"""mfkernels.ops.rq_spline against nflows (the independent oracle), its reference twin, dense
Jacobians and the torch transforms: forward and inverse, linear and bounded tails, K = 1, 2, 8, 32,
extreme logits, inputs outside the tail bound, batch 0 and 1, non-contiguous and broadcast
parameters, bad input."""

from __future__ import annotations

import warnings

import pytest
import torch

from mfkernels import ops, reference

nflows_rq = pytest.importorskip("nflows.transforms.splines.rational_quadratic")

BOUND = 2.5


def params(shape, K, tails, gen, dtype=torch.float64, device="cpu", scale=2.0):
    n_deriv = K - 1 if tails == "linear" else K + 1
    return tuple(
        (scale * torch.randn(*shape, n, dtype=dtype, generator=gen)).to(device) for n in (K, K, n_deriv)
    )


def inputs(shape, tails, gen, dtype=torch.float64, device="cpu"):
    if tails == "linear":  # a good share outside [-B, B], in the identity tails
        return (1.6 * BOUND * torch.randn(*shape, dtype=dtype, generator=gen)).to(device)
    return ((torch.rand(*shape, dtype=dtype, generator=gen) * 2 - 1) * BOUND * 0.999).to(device)


def nflows_spline(x, w, h, d, *, inverse, tails):
    if tails == "linear":
        return nflows_rq.unconstrained_rational_quadratic_spline(x, w, h, d, inverse=inverse, tail_bound=BOUND)
    return nflows_rq.rational_quadratic_spline(
        x, w, h, d, inverse=inverse, left=-BOUND, right=BOUND, bottom=-BOUND, top=BOUND
    )


@pytest.mark.parametrize("tails", ["linear", None], ids=["linear", "bounded"])
@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
@pytest.mark.parametrize("K", [1, 2, 8, 32])
def test_matches_nflows_and_twin_float64(K, inverse, tails, device, gen):
    x = inputs((40, 6), tails, gen, device=device)
    w, h, d = params((40, 6), K, tails, gen, device=device)
    y, ld = ops.rq_spline(x, w, h, d, inverse=inverse, tails=tails, tail_bound=BOUND)
    y_nf, ld_nf = nflows_spline(x.cpu(), w.cpu(), h.cpu(), d.cpu(), inverse=inverse, tails=tails)
    y_tw, ld_tw = reference.rq_spline(x, w, h, d, inverse=inverse, tails=tails, tail_bound=BOUND)
    assert y.shape == x.shape and ld.shape == x.shape
    torch.testing.assert_close(y.cpu(), y_nf, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(ld.cpu(), ld_nf, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y, y_tw, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(ld, ld_tw, rtol=1e-10, atol=1e-10)
    if tails == "linear":
        outside = x.abs() > BOUND
        assert outside.any()
        assert torch.equal(y[outside], x[outside]) and (ld[outside] == 0).all()


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
def test_float32_as_accurate_as_nflows(inverse, device, gen):
    """float32 errors against the float64 result, compared with nflows' own float32 errors. The
    maximum is set by a few ill-conditioned elements (slopes near min_derivative amplify knot
    rounding) and varies between implementations by chance, so the 99th percentile and the mean
    are compared."""
    x = inputs((1000, 8), "linear", gen)
    w, h, d = params((1000, 8), 8, "linear", gen)
    truth = nflows_spline(x, w, h, d, inverse=inverse, tails="linear")
    ours = ops.rq_spline(*(t.float().to(device) for t in (x, w, h, d)), inverse=inverse, tail_bound=BOUND)
    theirs = nflows_spline(*(t.float() for t in (x, w, h, d)), inverse=inverse, tails="linear")
    for o, t, ref in zip(ours, theirs, truth):
        assert o.dtype == torch.float32
        err, err_nf = (o.cpu().double() - ref).abs(), (t.double() - ref).abs()
        for stat in (lambda e: e.quantile(0.99), torch.mean):
            assert stat(err) <= 2 * stat(err_nf) + 1e-7, (stat(err), stat(err_nf))


@pytest.mark.parametrize("tails", ["linear", None], ids=["linear", "bounded"])
def test_round_trip(tails, device, gen):
    """inverse(forward(x)) = x to 1e-10 (fp64) / 1e-5 (fp32), the tolerance scaled by the inverse's
    condition 1 / f'(x) where the slope is below 1 (a rounding of y moves x by that factor)."""
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        x = inputs((64, 5), tails, gen, dtype=dtype, device=device)
        w, h, d = params((64, 5), 8, tails, gen, dtype=dtype, device=device, scale=1.0)
        y, ld = ops.rq_spline(x, w, h, d, tails=tails, tail_bound=BOUND)
        x_back, ld_inv = ops.rq_spline(y, w, h, d, inverse=True, tails=tails, tail_bound=BOUND)
        allowed = tol * torch.exp(-ld).clamp(min=1)
        assert ((x_back - x).abs() <= allowed).all(), ((x_back - x).abs() / allowed).max()
        assert ((ld_inv + ld).abs() <= 100 * allowed).all()


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
def test_logabsdet_is_log_derivative(inverse, device, gen):
    """Elementwise transform: the Jacobian is diagonal and its entries are exp(logabsdet)."""
    x = inputs((3, 4), "linear", gen, device=device)
    w, h, d = params((3, 4), 6, "linear", gen, device=device)
    J = torch.autograd.functional.jacobian(lambda v: ops.rq_spline(v, w, h, d, inverse=inverse, tail_bound=BOUND)[0], x)
    J = J.reshape(12, 12)
    _, ld = ops.rq_spline(x, w, h, d, inverse=inverse, tail_bound=BOUND)
    torch.testing.assert_close(J, torch.diag(J.diagonal()))
    torch.testing.assert_close(torch.log(J.diagonal().abs()), ld.reshape(-1), rtol=1e-9, atol=1e-9)


def test_extreme_logits_stay_finite_and_monotone(device):
    K = 8
    x = torch.linspace(-BOUND, BOUND, 201, dtype=torch.float64, device=device)
    w = torch.full((201, K), -60.0, dtype=torch.float64, device=device)
    w[:, 3] = 60.0  # one bin takes all the width, the others shrink to min_bin_width
    h = torch.zeros_like(w)
    h[:, 0] = 80.0
    d = torch.full((201, K - 1), 40.0, dtype=torch.float64, device=device)
    d[:, ::2] = -40.0
    y, ld = ops.rq_spline(x, w, h, d, tail_bound=BOUND)
    y_nf, ld_nf = nflows_spline(x.cpu(), w.cpu(), h.cpu(), d.cpu(), inverse=False, tails="linear")
    assert torch.isfinite(y).all() and torch.isfinite(ld).all()
    assert (y.diff() > 0).all()
    torch.testing.assert_close(y.cpu(), y_nf, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ld.cpu(), ld_nf, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("tails", ["linear", None], ids=["linear", "bounded"])
@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
def test_gradcheck_and_forward_ad(inverse, tails, device, gen):
    x = inputs((5, 3), tails, gen, device=device).requires_grad_()
    w, h, d = (t.requires_grad_() for t in params((5, 3), 4, tails, gen, device=device, scale=1.0))
    fn = lambda *a: ops.rq_spline(*a, inverse=inverse, tails=tails, tail_bound=BOUND)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, h, d))
    assert torch.autograd.gradcheck(fn, (x, w, h, d), check_forward_ad=True, check_backward_ad=False)


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
def test_gradients_match_nflows(inverse, device, gen):
    x = inputs((30, 4), "linear", gen)
    w, h, d = params((30, 4), 8, "linear", gen)
    leaves = [t.clone().requires_grad_() for t in (x, w, h, d)]
    out = nflows_spline(*leaves, inverse=inverse, tails="linear")
    g_nf = torch.autograd.grad(out[0].sum() + 0.3 * out[1].sum(), leaves)
    ours = [t.clone().to(device).requires_grad_() for t in (x, w, h, d)]
    out = ops.rq_spline(*ours, inverse=inverse, tail_bound=BOUND)
    g = torch.autograd.grad(out[0].sum() + 0.3 * out[1].sum(), ours)
    for a, b in zip(g, g_nf):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
def test_jvp_jacfwd_vmap_match_twin(inverse, device, gen):
    x = inputs((6, 3), "linear", gen, device=device)
    w, h, d = params((6, 3), 5, "linear", gen, device=device, scale=1.0)
    tangents = tuple(torch.randn(t.shape, dtype=t.dtype, generator=gen).to(device) for t in (x, w, h, d))
    op = lambda *a: ops.rq_spline(*a, inverse=inverse, tail_bound=BOUND)  # noqa: E731
    twin = lambda *a: reference.rq_spline(*a, inverse=inverse, tail_bound=BOUND)  # noqa: E731
    _, dot = torch.func.jvp(op, (x, w, h, d), tangents)
    _, dot_ref = torch.func.jvp(twin, (x, w, h, d), tangents)
    for a, b in zip(dot, dot_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    jac = torch.func.jacfwd(lambda v: op(v, w, h, d)[0])(x)
    torch.testing.assert_close(jac, torch.func.jacrev(lambda v: twin(v, w, h, d)[0])(x), rtol=1e-10, atol=1e-10)
    xs = torch.stack([x, 0.5 * x])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a per-sample fallback would warn
        # (a first forward-AD call may import torch.jit-scripted decompositions: a DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        batched = torch.func.vmap(op, in_dims=(0, None, None, None))(xs, w, h, d)
    for i in range(2):
        for a, b in zip(batched, op(xs[i], w, h, d)):
            torch.testing.assert_close(a[i], b)


def test_batch_sizes_noncontiguous_and_broadcast(device, gen):
    for B in (0, 1):
        x = inputs((B, 4), "linear", gen, device=device)
        w, h, d = params((B, 4), 8, "linear", gen, device=device)
        y, ld = ops.rq_spline(x, w, h, d)
        assert y.shape == (B, 4) and ld.shape == (B, 4)
        if B:
            torch.testing.assert_close(y, reference.rq_spline(x, w, h, d)[0])
    # non-contiguous: parameters as a transposed view, inputs strided
    x = inputs((8, 10), "linear", gen, device=device)[:, ::2]
    w, h, d = (t.transpose(0, 1).contiguous().transpose(0, 1) for t in params((8, 5), 6, "linear", gen, device=device))
    assert not w.is_contiguous() and not x.is_contiguous()
    for a, b in zip(ops.rq_spline(x, w, h, d), reference.rq_spline(x, w, h, d)):
        torch.testing.assert_close(a, b)
    # parameters shared over the batch: (D, K) against inputs (B, D); gradients sum over the batch
    x = inputs((7, 3), "linear", gen, device=device).requires_grad_()
    shared = [t.requires_grad_() for t in params((3,), 4, "linear", gen, device=device)]
    y, ld = ops.rq_spline(x, *shared, tail_bound=BOUND)
    expanded = [t.detach().expand(7, *t.shape).clone().requires_grad_() for t in shared]
    y2, ld2 = ops.rq_spline(x.detach(), *expanded, tail_bound=BOUND)
    torch.testing.assert_close(y, y2)
    g = torch.autograd.grad((y.sum() + ld.sum()), shared)
    g2 = torch.autograd.grad((y2.sum() + ld2.sum()), expanded)
    for a, b in zip(g, g2):
        torch.testing.assert_close(a, b.sum(0))


def test_opcheck_and_compile(device, gen):
    x = inputs((6, 3), "linear", gen, device=device)
    w, h, d = params((6, 3), 4, "linear", gen, device=device)
    opts = (True, "linear", BOUND, 1e-3, 1e-3, 1e-3)
    torch.library.opcheck(torch.ops.mfkernels.rq_spline_forward.default, (x, w, h, d, *opts))
    grads = (torch.randn_like(x), torch.randn_like(x))
    torch.library.opcheck(torch.ops.mfkernels.rq_spline_backward.default, (*grads, x, w, h, d, *opts))
    torch.library.opcheck(
        torch.ops.mfkernels.rq_spline_jvp.default, (x, w, h, d, torch.randn_like(x), w, h, d, *opts)
    )
    fn = lambda *a: ops.rq_spline(*a, tail_bound=BOUND)  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)
    for a, b in zip(compiled(x, w, h, d), fn(x, w, h, d)):
        torch.testing.assert_close(a, b)


def test_bad_input_names_the_argument(device, gen):
    x = inputs((4, 3), "linear", gen, device=device)
    w, h, d = params((4, 3), 5, "linear", gen, device=device)
    with pytest.raises(ValueError, match="unnormalized_derivatives"):
        ops.rq_spline(x, w, h, d[..., :-1])
    with pytest.raises(ValueError, match="unnormalized_derivatives .*6"):
        ops.rq_spline(x, w, h, d, tails=None)
    with pytest.raises(ValueError, match="tails"):
        ops.rq_spline(x, w, h, d, tails="circular")
    with pytest.raises(TypeError, match="unnormalized_heights"):
        ops.rq_spline(x, w, h.float(), d)
    with pytest.raises(TypeError, match="inputs"):
        ops.rq_spline(x.long(), w, h, d)
    with pytest.raises(ValueError, match="broadcast"):
        ops.rq_spline(x, w[:2, :2], h, d)
    with pytest.raises(RuntimeError, match="min_bin_width"):
        ops.rq_spline(x, w, h, d, min_bin_width=0.3)
    with pytest.raises(RuntimeError, match="tail_bound"):
        ops.rq_spline(x, w, h, d, tail_bound=-1.0)
    wb, hb, db = params((4, 3), 5, None, gen, device=device)
    with pytest.raises(ValueError, match="outside"):
        ops.rq_spline(
            3 * BOUND * torch.ones(4, 3, dtype=torch.float64, device=device), wb, hb, db, tails=None, tail_bound=BOUND
        )


def test_nan_policy(device, gen):
    x = inputs((4, 3), "linear", gen, device=device)
    w, h, d = params((4, 3), 5, "linear", gen, device=device)
    x[0, 0] = float("nan")  # a NaN input is not inside the interval: identity, logabsdet 0
    w[1, 1, 2] = float("nan")  # a NaN parameter poisons its own element only
    y, ld = ops.rq_spline(x, w, h, d, tail_bound=BOUND)
    assert y[0, 0].isnan() and ld[0, 0] == 0
    inside = x[1, 1].abs() <= BOUND
    assert bool(y[1, 1].isnan()) == bool(inside)
    mask = torch.ones_like(y, dtype=torch.bool)
    mask[0, 0] = mask[1, 1] = False
    assert torch.isfinite(y[mask]).all() and torch.isfinite(ld[mask]).all()
