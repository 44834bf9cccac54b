"""Training by the exact manifold likelihood (`mfkernels bench --exact`), each row against its plain-torch
baseline in the same run (medians, implementations taking turns):

1. The exact log-volume step: ½ log det(JᵀJ) of a generator g(u) = T(Pad(u)), T an 8-layer RQ spline
   coupling stack (D = 64, d = 8, K = 8, batch 256, float32), forward and backward to every parameter.
   mfkernels (manifold.generator_log_volume: fused tangents, their compiled reverse mode, gram_logdet)
   against the same layers built from nflows' classes around the identical conditioners, J by
   torch.func.jvp under torch.func.vmap over the d directions (the construction of jacfwd, batched
   over points; per-point vmap(jacfwd) fails on nflows' boolean masks), torch.linalg.slogdet, backward.
   The gradients of both are compared in float64.
2. The stochastic estimator at D = 784, d = 64 (an MNIST-sized 4-layer generator, batch 16): one
   Hutchinson + CG step (manifold.stochastic_log_volume, one probe) against one exact step; and the
   mean of its gradient over 1,000 probes against the exact gradient (relative error).
3. generator_log_volume forward + backward of 500 points through the 8-layer generator of row 1
   against per-point autograd Jacobians (create_graph) + slogdet + backward.
4. The exact log-volume of 500 points through an 8 -> 128 -> 64 MLP (no gradient), the same two routes.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from .. import flows, ops
from ..manifold import generator_log_volume, stochastic_log_volume
from .flows import _mfk_stack, _nflows_stack
from .models import _perturb

D, d, BATCH = 64, 8, 256
STOCHASTIC = (784, 64, 4, 16)  # features, latent dim, layers, batch


def _padded(transform: Callable, features: int, latent: int) -> Callable:
    def g(u):
        return transform(torch.cat([u, u.new_zeros(u.shape[0], features - latent)], dim=1))[0]
    return g


def _plain_log_volume(g: Callable, u: torch.Tensor) -> torch.Tensor:
    """½ log det(JᵀJ) per row with plain torch: the d Jacobian columns by jvp under vmap, slogdet in float64."""
    directions = torch.eye(u.shape[1], dtype=u.dtype).unsqueeze(1).expand(u.shape[1], *u.shape)
    _, columns = torch.func.vmap(lambda t: torch.func.jvp(g, (u,), (t,)), out_dims=(None, 0))(directions)
    J = columns.permute(1, 2, 0).double()
    return 0.5 * torch.linalg.slogdet(J.mT @ J).logabsdet.to(u.dtype)


def _step(loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> Callable[[], list[torch.Tensor]]:
    def run():
        return list(torch.autograd.grad(loss_fn(), params, allow_unused=True, materialize_grads=True))
    return run


def _interleaved_ms(fns: dict[str, Callable], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for fn in fns.values():
        fn()  # warm-up
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * sorted(t)[len(t) // 2] for name, t in times.items()}


def _generators(dtype: torch.dtype, seed: int):
    torch.manual_seed(seed)
    ours = _mfk_stack(ops.rq_spline)
    _perturb(ours, seed)
    nf = _nflows_stack(ours)
    ours, nf = ours.to(dtype), None if nf is None else nf.to(dtype)
    return ours, nf


def exact_step_rows(quick: bool = False, seed: int = 0) -> list[dict]:
    ours, nf = _generators(torch.float32, seed)
    if nf is None:
        return [{"case": "exact log-volume step", "skipped": "nflows is not installed"}]
    u = torch.randn(BATCH, d, generator=torch.Generator().manual_seed(seed))
    g_ours, g_nf = _padded(ours.transform, D, d), _padded(nf._transform, D, d)
    fns = {"mfkernels": _step(lambda: generator_log_volume(g_ours, u).mean(), list(ours.parameters())),
           "nflows + jvp/vmap + slogdet": _step(lambda: _plain_log_volume(g_nf, u).mean(), list(nf.parameters()))}
    ms = _interleaved_ms(fns, repeats=2 if quick else 7)
    # the gradients of both routes, float64, on a few points
    ours64, nf64 = _generators(torch.float64, seed)
    u64 = u[:16].double()
    ours_grad = _step(lambda: generator_log_volume(_padded(ours64.transform, D, d), u64).mean(),
                      [p for layer in ours64.transform.layers if isinstance(layer, flows.RQSplineCoupling)
                       for p in layer.conditioner.parameters()])()
    nf_grad = _step(lambda: _plain_log_volume(_padded(nf64._transform, D, d), u64).mean(),
                    [p for layer in nf64._transform._transforms if hasattr(layer, "transform_net")
                     for p in layer.transform_net.parameters()])()
    a, b = torch.cat([t.flatten() for t in ours_grad]), torch.cat([t.flatten() for t in nf_grad])
    relative = float((a - b).norm() / b.norm())
    base = ms["nflows + jvp/vmap + slogdet"]
    return [{"case": f"exact log-volume step, 8 RQ layers, D={D}, d={d}, batch {BATCH}", "impl": name,
             "step_ms": t, "speedup": base / t, "float64_gradient_relative_difference": relative}
            for name, t in ms.items()]


def stochastic_rows(quick: bool = False, seed: int = 0) -> list[dict]:
    features, latent, layers, batch = STOCHASTIC
    torch.manual_seed(seed)
    stack = []
    for i in range(layers):
        stack += [flows.RQSplineCoupling(features, num_bins=8, tail_bound=3.0, hidden_features=128,
                                         mask=flows.alternating_mask(features, even=i % 2 == 0)),
                  flows.Permutation(features, "reverse")]
    flow = flows.Flow(flows.Sequential(*stack), features)
    _perturb(flow, seed)
    g = _padded(flow.transform, features, latent)
    params = list(flow.parameters())
    u = torch.randn(batch, latent, generator=torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed + 1)
    info = {}

    def stochastic():
        surrogate, info["cg"] = stochastic_log_volume(g, u, probes=1, tol=1e-4, generator=generator, return_info=True)
        return surrogate.mean()

    fns = {"exact": _step(lambda: generator_log_volume(g, u).mean(), params),
           "stochastic (1 probe, CG tol 1e-4)": _step(stochastic, params)}
    ms = _interleaved_ms(fns, repeats=2 if quick else 5)
    exact = torch.cat([t.flatten() for t in fns["exact"]()])
    probes, chunk = (40, 20) if quick else (1000, 50)
    mean = torch.zeros_like(exact)
    few = u[:min(4, batch)]
    exact_few = torch.cat([t.flatten() for t in _step(lambda: generator_log_volume(g, few).mean(), params)()])
    for _ in range(probes // chunk):
        grads = _step(lambda: stochastic_log_volume(g, few, probes=chunk, tol=1e-6, generator=generator).mean(),
                      params)()
        mean += torch.cat([t.flatten() for t in grads]) * (chunk / probes)
    relative = float((mean - exact_few).norm() / exact_few.norm())
    base = ms["exact"]
    return [{"case": f"log-volume step, 4 RQ layers, D={features}, d={latent}, batch {batch}", "impl": name,
             "step_ms": t, "speedup_vs_exact": base / t,
             "cg_iterations": info["cg"].iterations if "stochastic" in name else None,
             f"mean_gradient_over_{probes}_probes_relative_error": relative if "stochastic" in name else None}
            for name, t in ms.items()]


def volume_rows(quick: bool = False, seed: int = 0) -> list[dict]:
    ours, _ = _generators(torch.float32, seed)
    g = _padded(ours.transform, D, d)
    params = list(ours.parameters())
    points = 40 if quick else 500
    u = torch.randn(points, d, generator=torch.Generator().manual_seed(seed))

    def per_point():
        total = 0
        for point in u:
            J = torch.autograd.functional.jacobian(lambda v: g(v[None])[0], point, create_graph=True).double()
            total = total + 0.5 * torch.linalg.slogdet(J.mT @ J).logabsdet
        return (total / points).float()

    ours_fn = _step(lambda: generator_log_volume(g, u).mean(), params)
    ours_ms = _interleaved_ms({"mfkernels": ours_fn}, repeats=3)["mfkernels"]
    start = time.perf_counter()
    reference = _step(per_point, params)()
    reference_ms = 1e3 * (time.perf_counter() - start)
    a = torch.cat([t.flatten() for t in ours_fn()])
    b = torch.cat([t.flatten() for t in reference])
    case = f"generator_log_volume f+b, {points} points, 8 RQ layers, D={D}, d={d}"
    return [{"case": case, "impl": "mfkernels", "ms": ours_ms, "speedup": reference_ms / ours_ms,
             "float32_gradient_relative_difference": float((a - b).norm() / b.norm())},
            {"case": case, "impl": "per-point autograd jacobian + slogdet", "ms": reference_ms, "speedup": 1.0}]


def mlp_volume_rows(quick: bool = False, seed: int = 0) -> list[dict]:
    """The exact log-volume (no gradient) of points through an 8 -> 128 -> 64 tanh MLP: generator_log_volume
    (primal once, 8 tangents under vmap) against per-point autograd Jacobians + slogdet."""
    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 128), torch.nn.Tanh(), torch.nn.Linear(128, 64))
    points = 40 if quick else 500
    u = torch.randn(points, 8, generator=torch.Generator().manual_seed(seed))

    def ours():
        with torch.no_grad():
            return generator_log_volume(mlp, u)

    def per_point():
        out = []
        for point in u:
            J = torch.autograd.functional.jacobian(lambda v: mlp(v[None])[0], point).double()
            out.append(0.5 * torch.linalg.slogdet(J.mT @ J).logabsdet)
        return torch.stack(out)

    ours_ms = _interleaved_ms({"mfkernels": ours}, repeats=3 if quick else 15)["mfkernels"]
    start = time.perf_counter()
    reference = per_point()
    reference_ms = 1e3 * (time.perf_counter() - start)
    case = f"exact log-volume of {points} points through an 8 -> 128 -> 64 MLP (no gradient)"
    return [{"case": case, "impl": "mfkernels", "ms": ours_ms, "speedup": reference_ms / ours_ms,
             "max_abs_difference": float((ours().double() - reference).abs().max())},
            {"case": case, "impl": "per-point autograd jacobian + slogdet", "ms": reference_ms, "speedup": 1.0}]


def run(quick: bool = False, seed: int = 0) -> dict[str, list[dict]]:
    return {"exact_step": exact_step_rows(quick, seed), "stochastic": stochastic_rows(quick, seed),
            "log_volume": volume_rows(quick, seed), "mlp_volume": mlp_volume_rows(quick, seed)}


def format_table(report: dict[str, list[dict]]) -> str:
    lines = []
    for rows in report.values():
        lines.append(rows[0]["case"])
        for r in rows:
            if "skipped" in r:
                lines.append(f"  skipped: {r['skipped']}")
                continue
            extras = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
                               if k not in ("case", "impl", "step_ms", "ms") and v is not None)
            lines.append(f"  {r['impl']:<38} {r.get('step_ms', r.get('ms')):>10.1f} ms   {extras}")
    return "\n".join(lines)
