"""Second derivatives of the twice-differentiable ops (affine_coupling in every mode, rq_spline with both
tails, forward and inverse): every route a user can take (double backward, torch.func.hessian,
grad of grad, reverse mode through torch.func.jvp and through torch.autograd.forward_ad, forward mode
through the backward) against the same route through the pure-torch twin, fp64 gradgradcheck, opcheck
of the backward_jvp kernels, and a clear error where the route is not implemented (jacfwd of jacfwd,
third derivatives)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.autograd.forward_ad as fwAD

from mfkernels import ops, reference

TOL = dict(rtol=1e-9, atol=1e-9)

AFFINE_CASES = list(itertools.product(("exp", "softclamp", "sigmoid", "volume_preserving"), (False, True)))
SPLINE_CASES = list(itertools.product(("linear", None), (False, True)))


def _affine(mode, inverse, broadcast, device, gen):
    """(op, twin, inputs): x (3, 5), shift/scale (3, 5) or broadcast (1, 5) as ActNorm passes them."""
    shape = (1, 5) if broadcast else (3, 5)
    x = 0.7 * torch.randn(3, 5, dtype=torch.float64, generator=gen)
    t, s = (0.7 * torch.randn(*shape, dtype=torch.float64, generator=gen) for _ in range(2))
    opts = dict(mode=mode, clamp=1.5 if mode == "softclamp" else None, inverse=inverse)
    return (lambda *a: ops.affine_coupling(*a, **opts), lambda *a: reference.affine_coupling(*a, **opts),
            tuple(v.to(device) for v in (x, t, s)))


def _spline(tails, inverse, broadcast, device, gen):
    """(op, twin, inputs): inputs (3, 4) with a third in the linear tails; K = 5 parameters per element,
    or (4, K) shared over the batch."""
    K = 5
    if tails is None:
        x = 1.8 * torch.rand(3, 4, dtype=torch.float64, generator=gen) - 0.9
    else:
        x = 1.5 * torch.randn(3, 4, dtype=torch.float64, generator=gen)
    lead = (4,) if broadcast else (3, 4)
    params = [torch.randn(*lead, n, dtype=torch.float64, generator=gen) for n in (K, K, K - 1 if tails else K + 1)]
    opts = dict(inverse=inverse, tails=tails)
    return (lambda *a: ops.rq_spline(*a, **opts), lambda *a: reference.rq_spline(*a, **opts),
            tuple(v.to(device) for v in (x, *params)))


def _cases():
    for (mode, inverse), broadcast in itertools.product(AFFINE_CASES, (False, True)):
        name = f"affine-{mode}-inv{int(inverse)}-b{int(broadcast)}"
        yield pytest.param(_affine, (mode, inverse, broadcast), id=name)
    for (tails, inverse), broadcast in itertools.product(SPLINE_CASES, (False, True)):
        name = f"spline-{tails}-inv{int(inverse)}-b{int(broadcast)}"
        yield pytest.param(_spline, (tails, inverse, broadcast), id=name)


def _scalar(fn, weights):
    """A scalar whose second derivatives mix every output nonlinearly (y² and sin of the log-det)."""
    def total(*args):
        y, logabsdet = fn(*args)
        return (weights[0] * y).square().sum() + torch.sin(weights[1] * logabsdet).sum()
    return total


def _weights(op, inputs, gen):
    return [torch.randn(o.shape, dtype=torch.float64, generator=gen).to(o.device) for o in op(*inputs)]


def _grad(value, inputs):
    return torch.autograd.grad(value, inputs, allow_unused=True, materialize_grads=True)


def _close(ours, twin):
    for a, b in zip(ours, twin):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("make, args", list(_cases()))
def test_every_second_order_route_matches_the_twin(make, args, device, gen):
    op, twin, inputs = make(*args, device, gen)
    weights = _weights(op, inputs, gen)
    tangents = tuple(torch.randn(t.shape, dtype=t.dtype, generator=gen).to(device) for t in inputs)
    cotangent = tuple(torch.randn(t.shape, dtype=t.dtype, generator=gen).to(device) for t in inputs)

    def double_backward(fn):  # reverse over reverse: ∇ of ⟨∇f, c⟩
        leaves = tuple(t.clone().requires_grad_() for t in inputs)
        first = torch.autograd.grad(_scalar(fn, weights)(*leaves), leaves, create_graph=True, materialize_grads=True)
        return _grad(sum((g * c).sum() for g, c in zip(first, cotangent)), leaves)

    def reverse_over_forward(fn):  # ∇ of a function of the forward-mode tangent
        leaves = tuple(t.clone().requires_grad_() for t in inputs)
        _, (y_dot, lad_dot) = torch.func.jvp(fn, leaves, tangents)
        return _grad((weights[0] * y_dot).square().sum() + torch.sin(weights[1] * lad_dot).sum(), leaves)

    def reverse_over_forward_ad(fn):  # the same through torch.autograd.forward_ad
        leaves = tuple(t.clone().requires_grad_() for t in inputs)
        with fwAD.dual_level():
            y, lad = fn(*(fwAD.make_dual(a, t) for a, t in zip(leaves, tangents)))
            # a twin's constant output (volume_preserving's log-det) has no tangent
            tangents_out = [fwAD.unpack_dual(o).tangent for o in (y, lad)]
            y_dot, lad_dot = (torch.zeros_like(o) if t is None else t for o, t in zip((y, lad), tangents_out))
        return _grad((weights[0] * y_dot).square().sum() + torch.sin(weights[1] * lad_dot).sum(), leaves)

    def forward_over_reverse(fn):  # jvp of the gradient (what torch.func.hessian composes)
        return torch.func.jvp(lambda *a: torch.func.grad(_scalar(fn, weights), argnums=tuple(range(len(a))))(*a),
                              inputs, tangents)[1]

    def hessian_of_first(fn):
        return (torch.func.hessian(lambda a: _scalar(fn, weights)(a, *inputs[1:]))(inputs[0]),)

    for route in (double_backward, reverse_over_forward, forward_over_reverse, hessian_of_first):
        _close(route(op), route(twin))
    # the spline twin itself fails under forward_ad + backward (torch's softmax tangent saves a tensor it
    # then modifies in place): this route is held to the twin's torch.func.jvp route
    _close(reverse_over_forward_ad(op), reverse_over_forward(twin))


@pytest.mark.parametrize("make, args", [p for p in _cases() if not p.values[1][-1]])
def test_gradgradcheck(make, args, device, gen):
    op, _, inputs = make(*args, device, gen)
    leaves = tuple(t.clone().requires_grad_() for t in inputs)
    assert torch.autograd.gradgradcheck(op, leaves)


def test_vmap_of_the_hessian(device, gen):
    """Per-sample Hessians with vmap over the second-order kernels (no per-sample fallback)."""
    op, twin, (x, t, s) = _affine("softclamp", False, False, device, gen)

    def per_sample(fn):
        return lambda xi, ti, si: torch.func.hessian(lambda a: fn(a[None], ti[None], si[None])[0].square().sum()
                                                     + fn(a[None], ti[None], si[None])[1].sum())(xi)

    ours = torch.func.vmap(per_sample(op))(x, t, s)
    torch.testing.assert_close(ours, torch.func.vmap(per_sample(twin))(x, t, s), **TOL)


def test_what_is_not_implemented_raises(device, gen):
    op, _, inputs = _spline("linear", False, False, device, gen)
    first = inputs[0]
    f = lambda a: op(a, *inputs[1:])[0].sum()  # noqa: E731
    with pytest.raises(RuntimeError, match=r"jacfwd of jacfwd"):
        torch.func.jacfwd(torch.func.jacfwd(f))(first)
    leaf = first.clone().requires_grad_()
    (g,) = torch.autograd.grad(f(leaf), leaf, create_graph=True)
    (h,) = torch.autograd.grad((g * g).sum(), leaf, create_graph=True)
    with pytest.raises(RuntimeError, match=r"rq_spline \(second derivative\): second derivatives are not"):
        torch.autograd.grad(h.sum(), leaf)  # a third derivative


@pytest.mark.parametrize("mode", ["exp", "volume_preserving"])
def test_opcheck_affine_backward_jvp(mode, device, gen):
    rows = [torch.randn(4, 6, dtype=torch.float64, generator=gen).to(device) for _ in range(8)]
    per_row = [torch.randn(4, dtype=torch.float64, generator=gen).to(device) for _ in range(2)]
    g, x, t, s, g_dot, x_dot, t_dot, s_dot = rows
    args = (g, per_row[0], x, t, s, g_dot, per_row[1], x_dot, t_dot, s_dot, mode, None, False)
    torch.library.opcheck(torch.ops.mfkernels.affine_coupling_backward_jvp.default, args)


@pytest.mark.parametrize("tails", ["linear", None])
def test_opcheck_rq_spline_backward_jvp(tails, device, gen):
    _, _, (x, w, h, d) = _spline(tails, True, False, device, gen)
    noise = lambda a: torch.randn(a.shape, dtype=a.dtype, generator=gen).to(device)  # noqa: E731
    args = (noise(x), noise(x), x, w, h, d, noise(x), noise(x), noise(x), noise(w), noise(h), noise(d),
            True, tails, 1.0, 1e-3, 1e-3, 1e-3)
    torch.library.opcheck(torch.ops.mfkernels.rq_spline_backward_jvp.default, args)


def test_backward_jvp_names_a_wrong_argument(device, gen):
    _, _, (x, w, h, d) = _spline("linear", False, False, device, gen)
    z = torch.zeros_like(x)
    with pytest.raises(RuntimeError, match="inputs_dot"):
        torch.ops.mfkernels.rq_spline_backward_jvp(z, z, x, w, h, d, z, z, z[:, :2], w, h, d)
    with pytest.raises(RuntimeError, match="grad_logabsdet_dot"):
        r = torch.zeros(3, 5, dtype=torch.float64, device=device)
        torch.ops.mfkernels.affine_coupling_backward_jvp(r, r[:, 0], r, r, r, r, r[:2, 0], r, r, r)


@pytest.mark.parametrize("batch", [0, 1])
@pytest.mark.parametrize("make, args", [pytest.param(_affine, ("volume_preserving", True, False), id="affine"),
                                        pytest.param(_spline, ("linear", False, False), id="spline")])
def test_double_backward_at_batch_0_and_1_and_on_non_contiguous_inputs(make, args, batch, device, gen):
    op, twin, inputs = make(*args, device, gen)
    # a batch of 0 or 1 rows, and the same values as views with stride 2 in the last dim (NaN in between)
    rows = tuple(t[:batch] for t in inputs)
    strided = tuple(torch.stack([t, torch.full_like(t, float("nan"))], dim=-1).flatten(-2)[..., ::2] for t in rows)
    assert batch == 0 or any(not t.is_contiguous() for t in strided)

    def double_backward(fn, tensors):
        leaves = tuple(t.clone().requires_grad_() if t.is_contiguous() else t.detach().requires_grad_()
                       for t in tensors)
        y, logabsdet = fn(*leaves)
        first = torch.autograd.grad(y.square().sum() + logabsdet.sin().sum(), leaves, create_graph=True,
                                    materialize_grads=True)
        return _grad(sum((g * g).sum() for g in first), leaves)

    want = double_backward(twin, rows)
    for got in (double_backward(op, rows), double_backward(op, strided)):
        assert [g.shape for g in got] == [w.shape for w in want]
        _close(got, want)
