"""mfkernels.ops.affine_coupling against the reference twin, closed forms and dense Jacobians, in
every mode and both directions; plus broadcasting, shapes, errors and the torch transforms."""

from __future__ import annotations

import warnings

import pytest
import torch

from mfkernels import ops, reference

MODES = [("exp", None), ("softclamp", 1.5), ("sigmoid", None), ("volume_preserving", None)]
MODE_IDS = [m for m, _ in MODES]


def rand(*shape, gen, device="cpu", dtype=torch.float64, scale=1.0):
    return (scale * torch.randn(*shape, dtype=dtype, generator=gen)).to(device)


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
@pytest.mark.parametrize("mode,clamp", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_twin(mode, clamp, inverse, dtype, device, gen):
    x, t, s = (rand(6, 5, 4, gen=gen, device=device, dtype=dtype) for _ in range(3))
    y, ld = ops.affine_coupling(x, t, s, mode=mode, clamp=clamp, inverse=inverse)
    y_ref, ld_ref = reference.affine_coupling(x, t, s, mode=mode, clamp=clamp, inverse=inverse)
    assert y.shape == x.shape and ld.shape == (6,) and y.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, y_ref, **tol)
    torch.testing.assert_close(ld, ld_ref, **tol)


@pytest.mark.parametrize("mode,clamp", MODES, ids=MODE_IDS)
def test_closed_forms_and_round_trip(mode, clamp, device, gen):
    x, t, s = (rand(8, 10, gen=gen, device=device) for _ in range(3))
    y, ld = ops.affine_coupling(x, t, s, mode=mode, clamp=clamp)
    a = {
        "exp": s,
        "softclamp": 1.5 * torch.tanh(s / 1.5),
        "sigmoid": torch.log(torch.sigmoid(s + 2)),
        "volume_preserving": s - s.mean(1, keepdim=True),
    }[mode]
    torch.testing.assert_close(y, x * torch.exp(a) + t)
    expected_ld = torch.zeros(8, dtype=x.dtype, device=device) if mode == "volume_preserving" else a.sum(1)
    torch.testing.assert_close(ld, expected_ld)
    if mode == "volume_preserving":
        assert (ld == 0).all(), "volume-preserving logabsdet must be exactly 0"
    x_back, ld_inv = ops.affine_coupling(y, t, s, mode=mode, clamp=clamp, inverse=True)
    torch.testing.assert_close(x_back, x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ld_inv, -ld)
    x32 = x.float()
    y32, _ = ops.affine_coupling(x32, t.float(), s.float(), mode=mode, clamp=clamp)
    back32, _ = ops.affine_coupling(y32, t.float(), s.float(), mode=mode, clamp=clamp, inverse=True)
    torch.testing.assert_close(back32, x32, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
@pytest.mark.parametrize("mode,clamp", MODES, ids=MODE_IDS)
def test_logabsdet_is_log_det_of_dense_jacobian(mode, clamp, inverse, device, gen):
    t, s = rand(1, 6, gen=gen, device=device), rand(1, 6, gen=gen, device=device)
    x = rand(1, 6, gen=gen, device=device)
    f = lambda v: ops.affine_coupling(v.unsqueeze(0), t, s, mode=mode, clamp=clamp, inverse=inverse)[0][0]
    jac = torch.autograd.functional.jacobian(f, x[0])
    _, ld = ops.affine_coupling(x, t, s, mode=mode, clamp=clamp, inverse=inverse)
    torch.testing.assert_close(ld[0], torch.linalg.slogdet(jac).logabsdet, rtol=1e-10, atol=1e-10)
    if mode == "volume_preserving":
        torch.testing.assert_close(torch.linalg.det(jac), torch.tensor(1.0, dtype=x.dtype, device=device))


def test_broadcasting_and_gradients_of_broadcast_inputs(device, gen):
    x = rand(5, 3, 4, gen=gen, device=device).requires_grad_()
    t = rand(1, 3, 4, gen=gen, device=device).requires_grad_()  # shared over the batch
    s = rand(5, 3, 1, gen=gen, device=device).requires_grad_()  # shared over the last dim
    out = ops.affine_coupling(x, t, s, mode="softclamp", clamp=2.0)
    ref = reference.affine_coupling(x, t, s, mode="softclamp", clamp=2.0)
    torch.testing.assert_close(out, ref)
    g = torch.autograd.grad(out[0].square().sum() + out[1].sum(), (x, t, s))
    g_ref = torch.autograd.grad(ref[0].square().sum() + ref[1].sum(), (x, t, s))
    for a, b, inp in zip(g, g_ref, (x, t, s)):
        assert a.shape == inp.shape
        torch.testing.assert_close(a, b)


def test_batch_zero_one_and_noncontiguous(device, gen):
    empty = torch.empty(0, 4, dtype=torch.float64, device=device, requires_grad=True)
    y, ld = ops.affine_coupling(empty, empty, empty)
    assert y.shape == (0, 4) and ld.shape == (0,)
    (g,) = torch.autograd.grad(y.sum() + ld.sum(), empty)
    assert g.shape == (0, 4)
    one = rand(1, 7, gen=gen, device=device)
    torch.testing.assert_close(ops.affine_coupling(one, one, one), reference.affine_coupling(one, one, one))
    x = rand(8, 6, gen=gen, device=device).mT  # (6, 8), transposed strides
    t = rand(12, 16, gen=gen, device=device)[::2, ::2]
    s = rand(6, 8, gen=gen, device=device)
    assert not x.is_contiguous() and not t.is_contiguous()
    torch.testing.assert_close(
        ops.affine_coupling(x, t, s, mode="sigmoid"), reference.affine_coupling(x, t, s, mode="sigmoid")
    )
    vector = rand(5, gen=gen, device=device)  # (B,) alone: one element per sample
    torch.testing.assert_close(
        ops.affine_coupling(vector, vector, vector), reference.affine_coupling(vector, vector, vector)
    )


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
@pytest.mark.parametrize("mode,clamp", MODES, ids=MODE_IDS)
def test_gradcheck_float64(mode, clamp, inverse, device, gen):
    args = tuple(rand(3, 2, 4, gen=gen, device=device).requires_grad_() for _ in range(3))
    f = lambda x, t, s: ops.affine_coupling(x, t, s, mode=mode, clamp=clamp, inverse=inverse)
    assert torch.autograd.gradcheck(f, args, check_forward_ad=True)


def test_jvp_jacfwd_vmap_match_twin(device, gen):
    x, t, s = (rand(4, 3, 5, gen=gen, device=device) for _ in range(3))
    tangents = tuple(rand(4, 3, 5, gen=gen, device=device) for _ in range(3))
    for mode, clamp in MODES:
        f = lambda x, t, s: ops.affine_coupling(x, t, s, mode=mode, clamp=clamp)
        f_ref = lambda x, t, s: reference.affine_coupling(x, t, s, mode=mode, clamp=clamp)
        _, tan = torch.func.jvp(f, (x, t, s), tangents)
        _, tan_ref = torch.func.jvp(f_ref, (x, t, s), tangents)
        torch.testing.assert_close(tan, tan_ref)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no slow per-sample vmap fallback
            # (a first forward-AD call may import torch.jit-scripted decompositions: a DeprecationWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            jac = torch.func.jacfwd(lambda v: f(v, t, s)[0])(x)
            per_sample = torch.func.vmap(lambda a, b, c: f(a, b, c))(x, t, s)
        torch.testing.assert_close(jac, torch.func.jacrev(lambda v: f_ref(v, t, s)[0])(x))
        per_sample_ref = torch.func.vmap(lambda a, b, c: f_ref(a, b, c))(x, t, s)
        torch.testing.assert_close(per_sample, per_sample_ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_all_kernels(dtype, device, gen):
    x, t, s, xd, td, sd = (rand(4, 9, gen=gen, device=device, dtype=dtype) for _ in range(6))
    g, gl = rand(4, 9, gen=gen, device=device, dtype=dtype), rand(4, gen=gen, device=device, dtype=dtype)
    for mode, clamp in MODES:
        for inverse in (False, True):
            opts = (mode, clamp, inverse)
            torch.library.opcheck(torch.ops.mfkernels.affine_coupling_forward, (x, t, s, *opts))
            torch.library.opcheck(torch.ops.mfkernels.affine_coupling_backward, (g, gl, x, t, s, *opts))
            torch.library.opcheck(torch.ops.mfkernels.affine_coupling_jvp, (x, t, s, xd, td, sd, *opts))


def test_torch_compile_fullgraph(device, gen):
    def loss(x, t, s):
        y, ld = ops.affine_coupling(x, t, s, mode="softclamp", clamp=3.0)
        z, ld2 = ops.affine_coupling(y, t.flip(-1), s.flip(-1), mode="volume_preserving")
        return z.square().sum() - (ld + ld2).sum()

    compiled = torch.compile(loss, fullgraph=True, dynamic=True)
    for B in (5, 9):
        args = tuple(rand(B, 12, gen=gen, device=device).requires_grad_() for _ in range(3))
        value = compiled(*args)
        grads = torch.autograd.grad(value, args)
        eager = tuple(a.detach().clone().requires_grad_() for a in args)
        expected = loss(*eager)
        torch.testing.assert_close(value, expected)
        for a, b in zip(grads, torch.autograd.grad(expected, eager)):
            torch.testing.assert_close(a, b)


def test_nan_policy(device):
    ones, zeros = torch.ones(3, 4, device=device), torch.zeros(3, 4, device=device)
    x = ones.clone()
    x[1, 2] = float("nan")
    y, ld = ops.affine_coupling(x, zeros, zeros)
    assert torch.isnan(y).sum() == 1 and torch.isnan(y[1, 2]) and torch.isfinite(ld).all()
    s = zeros.clone()
    s[2, 0] = float("nan")
    y, ld = ops.affine_coupling(ones, zeros, s)
    assert torch.isnan(y).sum() == 1 and torch.isnan(ld[2]) and torch.isfinite(ld[:2]).all()
    y, ld = ops.affine_coupling(ones, zeros, s, mode="volume_preserving")
    assert torch.isnan(y[2]).all() and torch.isfinite(y[:2]).all() and (ld == 0).all()


def test_bad_inputs_raise_clear_errors(device):
    x = torch.zeros(3, 4, device=device)
    with pytest.raises(ValueError, match="'mode' must be one of"):
        ops.affine_coupling(x, x, x, mode="affine")
    with pytest.raises(ValueError, match="'clamp' must be a positive finite float"):
        ops.affine_coupling(x, x, x, mode="softclamp")
    with pytest.raises(ValueError, match="do not broadcast"):
        ops.affine_coupling(x, torch.zeros(3, 5, device=device), x)
    with pytest.raises(ValueError, match="may not add dimensions"):
        ops.affine_coupling(torch.zeros(4, device=device), x, x)
    with pytest.raises(TypeError, match="'scale' has dtype torch.float64"):
        ops.affine_coupling(x, x, x.double())
    with pytest.raises(TypeError, match="'shift' must be float32 or float64"):
        ops.affine_coupling(x, x.long(), x)
    with pytest.raises(RuntimeError, match="argument 'scale' must have shape"):
        torch.ops.mfkernels.affine_coupling_forward(x, x, torch.zeros(3, 5, device=device))
    with pytest.raises(RuntimeError, match="argument 'grad_logabsdet' must have shape"):
        torch.ops.mfkernels.affine_coupling_backward(x, torch.zeros(2, device=device), x, x, x)
    with pytest.raises(RuntimeError, match="argument 'mode' must be one of"):
        torch.ops.mfkernels.affine_coupling_forward(x, x, x, "nope")


@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
@pytest.mark.parametrize("mode,clamp", MODES, ids=MODE_IDS)
def test_expanded_output_gradients_are_read_as_they_are(mode, clamp, inverse, device, gen):
    # y.sum() hands back a gradient with strides (0, 0), y.sum(1) one with strides (1, 0): the CPU kernel
    # reads both without materialising them; the gradients must equal the twin's
    x, t, s = (rand(5, 3, 4, gen=gen, device=device).requires_grad_() for _ in range(3))
    w = rand(5, gen=gen, device=device)
    for reduce in (lambda y: y.sum(), lambda y: (y.sum((1, 2)) * w).sum(), lambda y: y.sum(2).sum()):
        grads = []
        for f in (ops.affine_coupling, reference.affine_coupling):
            y, ld = f(x, t, s, mode=mode, clamp=clamp, inverse=inverse)
            grads.append(torch.autograd.grad(reduce(y) + (ld * w).sum(), (x, t, s)))
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b)
