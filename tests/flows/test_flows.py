"""mfkernels.flows layers: exact invertibility, log-determinants against dense Jacobians, context
conditioning, forward-mode AD through a stack, and torch.compile of a stack."""

from __future__ import annotations

import pytest
import torch

from mfkernels import flows
from mfkernels.ops import affine_coupling


def randomise(module: torch.nn.Module, gen: torch.Generator, scale: float = 0.3) -> None:
    """Moves every parameter off its (identity) initialisation so the test exercises real maps."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def dense_jacobian(flow, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """d flow(x) / dx of one sample x (any shape), flattened to a square matrix (the oracle for log|det|)."""
    jac = torch.autograd.functional.jacobian(lambda v: flow(v.unsqueeze(0), context)[0][0].flatten(), x)
    return jac.reshape(x.numel(), x.numel())


def check_inverse_and_dense_logdet(flow, x, context, tol: float = 1e-10):
    """flow.inverse undoes flow and −logabsdet is its log-det; each row's logabsdet is slogdet of the
    dense Jacobian. Returns (z, logabsdet)."""
    z, logabsdet = flow(x, context)
    x_back, inverse_logabsdet = flow.inverse(z, context)
    torch.testing.assert_close(x_back, x, rtol=tol, atol=tol)
    torch.testing.assert_close(inverse_logabsdet, -logabsdet)
    for b in range(len(x)):
        ctx = None if context is None else context[b : b + 1]
        jac = dense_jacobian(flow, x[b], ctx)
        torch.testing.assert_close(logabsdet[b], torch.linalg.slogdet(jac).logabsdet)
    return z, logabsdet


def check_same_maps(ours, theirs, x, tol: float = 1e-10):
    """Two layers with the same parameters give the same outputs and log-dets, forward and inverse."""
    for inverse in (False, True):
        a = ours.inverse(x) if inverse else ours(x)
        b = theirs.inverse(x) if inverse else theirs(x)
        for u, v in zip(a, b):
            torch.testing.assert_close(u, v, rtol=tol, atol=tol)


def stack(features: int, context_features: int = 0) -> flows.Sequential:
    layers = []
    for i, mode in enumerate(["exp", "softclamp", "sigmoid", "volume_preserving"]):
        layers += [
            flows.AffineCoupling(features, flows.alternating_mask(features, even=i % 2 == 0), mode=mode,
                                 context_features=context_features, hidden_features=16),
            flows.Permutation(features, "random", seed=i),
        ]
    return flows.Sequential(*layers).double()


@pytest.mark.parametrize("context_features", [0, 3])
def test_stack_is_invertible_and_logabsdet_matches_dense_jacobian(context_features, gen):
    features = 5
    flow = stack(features, context_features)
    randomise(flow, gen)
    x = torch.randn(7, features, dtype=torch.float64, generator=gen)
    context = torch.randn(7, context_features, dtype=torch.float64, generator=gen) if context_features else None
    check_inverse_and_dense_logdet(flow, x, context)


def test_coupling_starts_as_identity_and_uses_the_context(gen):
    layer = flows.AffineCoupling(4, context_features=2, hidden_features=8).double()
    x = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    c = torch.randn(3, 2, dtype=torch.float64, generator=gen)
    z, logabsdet = layer(x, c)
    torch.testing.assert_close(z, x)
    assert (logabsdet == 0).all()
    randomise(layer, gen)
    z1, _ = layer(x, c)
    z2, _ = layer(x, c + 1.0)
    assert not torch.allclose(z1, z2), "the context must change the transform"
    with pytest.raises(ValueError, match="expected a context of 2 features"):
        layer(x)


def test_layer_equals_the_op_on_its_transformed_half(gen):
    layer = flows.AffineCoupling(6, mode="sigmoid", hidden_features=8).double()
    randomise(layer, gen)
    x = torch.randn(4, 6, dtype=torch.float64, generator=gen)
    z, logabsdet = layer(x)
    x_id, x_tr = x[:, ::2], x[:, 1::2]  # alternating mask: even features pass through
    shift, scale = layer.conditioner(x_id).chunk(2, dim=-1)
    y_tr, expected_logabsdet = affine_coupling(x_tr, shift, scale, mode="sigmoid")
    torch.testing.assert_close(z[:, ::2], x_id)
    torch.testing.assert_close(z[:, 1::2], y_tr)
    torch.testing.assert_close(logabsdet, expected_logabsdet)


@pytest.mark.parametrize("features", [6, (4, 3, 3)])
@pytest.mark.parametrize("even", [True, False])
@pytest.mark.parametrize("kind", ["affine", "spline"])
def test_alternating_split_by_views_equals_the_index_split(features, even, kind, gen):
    """Alternating masks split by views and merge by a stack (identity_slot); any other mask by
    index_select / index_put. Both must give the same values and gradients, forward and inverse."""
    n = features if isinstance(features, int) else features[0]
    make = flows.AffineCoupling if kind == "affine" else flows.RQSplineCoupling
    fast = make(features, mask=flows.alternating_mask(n, even=even), hidden_features=8).double()
    randomise(fast, gen)
    slow = make(features, mask=flows.alternating_mask(n, even=even), hidden_features=8).double()
    slow.load_state_dict(fast.state_dict())
    assert fast.identity_slot == (0 if even else 1)
    slow.identity_slot = None
    shape = (5, features) if isinstance(features, int) else (5, *features)
    x = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
    for direction in ("forward", "inverse"):
        outs = [getattr(layer, direction)(x) for layer in (fast, slow)]
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b)
        weights = torch.randn(shape, dtype=torch.float64, generator=gen)
        grads = [torch.autograd.grad((out[0] * weights).sum() + out[1].sum(), [x, *layer.parameters()])
                 for out, layer in zip(outs, (fast, slow))]
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b)
    assert make(n, mask=torch.arange(n) < n // 2).identity_slot is None  # a half split takes the index path


def test_forward_mode_jacobian_of_the_inverse_stack(gen):
    """jacfwd through layers built on the ops: the generator Jacobian M-flow's density needs."""
    flow = stack(4)
    randomise(flow, gen)
    z = torch.randn(2, 4, dtype=torch.float64, generator=gen)
    g = lambda v: flow.inverse(v)[0]
    jac_fwd = torch.func.vmap(torch.func.jacfwd(lambda v: g(v.unsqueeze(0))[0]))(z)
    jac_rev = torch.func.vmap(torch.func.jacrev(lambda v: g(v.unsqueeze(0))[0]))(z)
    torch.testing.assert_close(jac_fwd, jac_rev)


def test_torch_compile_of_a_stack_matches_eager(gen):
    flow = stack(6)
    randomise(flow, gen)
    x = torch.randn(9, 6, dtype=torch.float64, generator=gen)
    compiled = torch.compile(flow, fullgraph=True)
    z, logabsdet = compiled(x)
    z_eager, logabsdet_eager = flow(x)
    torch.testing.assert_close(z, z_eager)
    torch.testing.assert_close(logabsdet, logabsdet_eager)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="both parts non-empty"):
        flows.AffineCoupling(3, mask=torch.tensor([True, True, True]))
    with pytest.raises(ValueError, match="not a permutation"):
        flows.Permutation(3, torch.tensor([0, 0, 1]))
    with pytest.raises(TypeError):
        flows.Transform()


def test_realnvp_on_two_moons_learns_the_density():
    """Six softclamp couplings trained 300 Adam steps on two moons. The threshold comes from the
    identical flow built on the reference twin (coupling_fn=reference.affine_coupling), which reached
    a held-out NLL of 1.33 nats with these seeds; a Gaussian fit to the data sits near 2.7."""
    import math

    from mfkernels.data import two_moons

    torch.manual_seed(0)
    flow = flows.Sequential(
        *[flows.AffineCoupling(2, flows.alternating_mask(2, even=i % 2 == 0), mode="softclamp", clamp=3.0)
          for i in range(6)]
    )
    g = torch.Generator().manual_seed(1)
    data, test = two_moons(20000, generator=g), two_moons(4000, generator=g)

    def nll(x):
        z, logabsdet = flow(x)
        return -(-0.5 * z.square().sum(1) - math.log(2 * math.pi) + logabsdet).mean()

    with torch.no_grad():
        initial = nll(test).item()
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    for _ in range(300):
        loss = nll(data[torch.randint(0, len(data), (256,), generator=g)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = nll(test).item()
    assert initial > 2.5, initial
    assert final < 1.40, f"held-out NLL {final:.3f} nats; the twin flow reaches 1.33"


def test_actnorm_data_dependent_init_and_images(gen):
    layer = flows.ActNorm(3).double()
    x = 2.0 + 5.0 * torch.randn(64, 3, 4, 4, dtype=torch.float64, generator=gen)
    y, logabsdet = layer(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(
        y.std(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0
    )
    # log|det| counts each channel's log-scale once per pixel
    torch.testing.assert_close(logabsdet, (16 * layer.log_scale.sum()).expand(64))
    x_back, inverse_logabsdet = layer.inverse(y)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(inverse_logabsdet, -logabsdet)
    before = layer.log_scale.detach().clone()
    layer(x + 100.0)  # initialised once only
    torch.testing.assert_close(layer.log_scale.detach(), before)


def test_lulinear_is_invertible_with_dense_logdet(gen):
    layer = flows.LULinear(5, seed=3).double()
    randomise(layer, gen, scale=0.3)
    x = torch.randn(6, 5, dtype=torch.float64, generator=gen)
    z, logabsdet = layer(x)
    torch.testing.assert_close(logabsdet, torch.linalg.slogdet(layer.weight()).logabsdet.expand(6))
    x_back, inverse_logabsdet = layer.inverse(z)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(inverse_logabsdet, -logabsdet)
    images = torch.randn(2, 3, 3, 5, dtype=torch.float64, generator=gen)  # channels last: a 1x1 convolution
    zi, ldi = layer(images)
    torch.testing.assert_close(ldi, 9 * torch.linalg.slogdet(layer.weight()).logabsdet.expand(2))
    torch.testing.assert_close(layer.inverse(zi)[0], images)


def test_glow_style_vector_stack_dense_jacobian(gen):
    flow = flows.Sequential(
        flows.ActNorm(4), flows.LULinear(4, seed=1), flows.AffineCoupling(4, hidden_features=8),
        flows.ActNorm(4), flows.LULinear(4, seed=2), flows.AffineCoupling(4, hidden_features=8, mode="sigmoid"),
    ).double()
    flow(torch.randn(32, 4, dtype=torch.float64, generator=gen))  # data-dependent init
    randomise(flow, gen, scale=0.2)
    x = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    z, logabsdet = flow(x)
    torch.testing.assert_close(flow.inverse(z)[0], x)
    for b in range(3):
        jac = dense_jacobian(flow, x[b])
        torch.testing.assert_close(logabsdet[b], torch.linalg.slogdet(jac).logabsdet)


def test_actnorm_stack_compiles_and_checkpoint_keeps_the_init(gen):
    def build():
        return flows.Sequential(
            flows.ActNorm(4), flows.LULinear(4), flows.AffineCoupling(4, hidden_features=8)
        ).double()

    flow = build()
    x = 3.0 + torch.randn(16, 4, dtype=torch.float64, generator=gen)
    flow(x)  # data-dependent init
    compiled = torch.compile(flow, fullgraph=True)
    z, logabsdet = compiled(x)
    z_eager, logabsdet_eager = flow(x)
    torch.testing.assert_close(z, z_eager)
    torch.testing.assert_close(logabsdet, logabsdet_eager)
    restored = build()
    restored.load_state_dict(flow.state_dict())
    restored(x + 50.0)  # a restored, initialised ActNorm must not re-initialise on new data
    torch.testing.assert_close(restored(x)[0], z_eager)


@pytest.mark.parametrize("context_features", [0, 2])
def test_rq_spline_coupling_stack_invertible_dense_jacobian_and_jvp(context_features, gen):
    features = 4
    layers = []
    for i in range(3):
        layers += [flows.RQSplineCoupling(features, num_bins=5, tail_bound=2.0,
                                          mask=flows.alternating_mask(features, even=i % 2 == 0),
                                          context_features=context_features, hidden_features=16),
                   flows.Permutation(features, "reverse")]
    flow = flows.Sequential(*layers).double()
    randomise(flow, gen, scale=0.5)
    x = 1.5 * torch.randn(6, features, dtype=torch.float64, generator=gen)  # some inputs in the linear tails
    context = torch.randn(6, context_features, dtype=torch.float64, generator=gen) if context_features else None
    # three stacked splines with random parameters reach slopes near min_derivative, where the
    # inverse amplifies rounding ~1e3-fold: 1e-8 rather than the single op's 1e-10
    z, logabsdet = check_inverse_and_dense_logdet(flow, x, context, tol=1e-8)
    for b in range(6):
        ctx = None if context is None else context[b : b + 1]
        jac = dense_jacobian(flow, x[b], ctx)
        jac_fwd = torch.func.jacfwd(lambda v: flow.inverse(v.unsqueeze(0), ctx)[0][0])(z[b])
        torch.testing.assert_close(jac_fwd, torch.linalg.inv(jac), rtol=1e-8, atol=1e-8)


def test_rq_spline_coupling_equals_the_nflows_spline_layer(gen):
    """The same layer on nflows' spline function (an independent implementation) gives the same map."""
    nflows_rq = pytest.importorskip("nflows.transforms.splines.rational_quadratic")
    ours = flows.RQSplineCoupling(6, num_bins=8, tail_bound=3.0, hidden_features=16).double()
    randomise(ours, gen)
    theirs = flows.RQSplineCoupling(6, num_bins=8, tail_bound=3.0, hidden_features=16,
                                    spline_fn=nflows_rq.unconstrained_rational_quadratic_spline).double()
    theirs.load_state_dict(ours.state_dict())
    check_same_maps(ours, theirs, 2 * torch.randn(50, 6, dtype=torch.float64, generator=gen))


def test_elementwise_spline_with_a_context_and_the_realnvp_builder(gen):
    """The context-conditioned elementwise spline (chart flows on d = 1) and realnvp_flow: exact
    inverses and log|det| against dense Jacobians; the context changes the map."""
    spline = flows.ElementwiseRQSpline(1, num_bins=5, tail_bound=2.0, context_features=3, hidden_features=8).double()
    randomise(spline, gen, scale=0.4)
    x = 1.5 * torch.randn(6, 1, generator=gen, dtype=torch.float64)
    context = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    z, logabsdet = spline(x, context)
    x_back, inverse_logabsdet = spline.inverse(z, context)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(inverse_logabsdet, -logabsdet)
    for b in range(6):
        torch.testing.assert_close(logabsdet[b], torch.linalg.slogdet(
            dense_jacobian(spline, x[b], context[b:b + 1])).logabsdet)
    assert not torch.allclose(spline(x, context + 1.0)[0], z)
    realnvp = flows.realnvp_flow(3, num_layers=2, hidden_features=8, seed=1).double()
    randomise(realnvp, gen, scale=0.2)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    z, logabsdet = realnvp(x)
    torch.testing.assert_close(realnvp.inverse(z)[0], x)
    for b in range(4):
        torch.testing.assert_close(logabsdet[b], torch.linalg.slogdet(dense_jacobian(realnvp, x[b])).logabsdet)
    with pytest.raises(ValueError, match="features >= 2"):
        flows.realnvp_flow(1)
