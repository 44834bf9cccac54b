"""How well a model learned a density on a known 1-D manifold (paper 000's thin-spiral comparison),
and timings of the exact Gram density against autograd.

`density_along_curve` restricts the model's density to the true curve x = g(u), turns it into a
density over u (times |g'(u)|, as the model's manifold density is per unit arc length), renormalises
it over the curve (so full-dimensional models, whose density is per unit area, compare by shape) and
compares it with the true p(u): total variation, KL(true ‖ learned) and the Kolmogorov-Smirnov
distance of the CDFs along the curve (the statistic of the DNF authors' code). `mass` is the learned
density's integral along the curve before renormalising (1 for a correct manifold density).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import Tensor

from .manifold import manifold_log_prob

KL_FLOOR = 1e-10  # where a model gives density 0 (DNF's σ/3 rule) KL uses this floor instead of log 0


@torch.no_grad()
def density_along_curve(log_prob: Callable[[Tensor], Tensor], curve, num: int = 4000,
                        q_max: float = 0.999, batch_size: int = 4096, dtype=torch.float32) -> dict[str, float]:
    """Compares exp(log_prob) on the curve with its true density; `curve` has embed(u), speed(u),
    latent_log_prob(u) and quantile(q) (e.g. data.ThinSpiral). Midpoint rule on num cells of u up to
    the q_max quantile; the true density is renormalised to that range too."""
    edges = torch.linspace(0, curve.quantile(q_max), num + 1, dtype=torch.float64)
    u = (edges[1:] + edges[:-1]) / 2
    du = edges[1] - edges[0]
    x = curve.embed(u).to(dtype)
    log_q = torch.cat([log_prob(chunk).double() for chunk in x.split(batch_size)])
    q = torch.nan_to_num(log_q.exp(), nan=0.0, posinf=0.0) * curve.speed(u)
    p = curve.latent_log_prob(u).exp()
    p = p / (p.sum() * du)
    mass = float(q.sum() * du)
    if not mass > 0:
        return {"tv": 1.0, "kl": math.inf, "ks": 1.0, "mass": mass}
    qn = q / (q.sum() * du)
    tv = 0.5 * float((p - qn).abs().sum() * du)
    kl = float((p * (p.log() - qn.clamp_min(KL_FLOOR).log())).sum() * du)
    ks = float((torch.cumsum(p, 0) * du - torch.cumsum(qn, 0) * du).abs().max())
    return {"tv": tv, "kl": kl, "ks": ks, "mass": mass}


def _autograd_gram_log_prob(model, x: Tensor) -> Tensor:
    """The slow reference: per point, u' = encode(x), J from torch.autograd.functional.jacobian of
    decode, then log N(u') - ½ slogdet(JᵀJ) (in float64). The way it is done without a fused route:
    one point and D backward passes at a time."""
    out = []
    for point in x:
        u = model.encode(point[None])
        J = torch.autograd.functional.jacobian(lambda v: model.decode(v[None])[0], u[0])
        log_base = -0.5 * u.square().sum() - 0.5 * u.shape[1] * math.log(2 * math.pi)
        J = J.double()  # as generator_log_volume does: float32 JᵀJ loses flows' ill-conditioned J
        out.append(log_base - 0.5 * torch.linalg.slogdet(J.mT @ J).logabsdet.to(u.dtype))
    return torch.stack(out)


def _sync(x: Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def time_gram_density(model, x: Tensor, repeats: int = 3, reference_points: int | None = None) -> dict[str, float]:
    """Seconds to evaluate the exact manifold density of the points x: mfkernels (batched tangents +
    gram_logdet; best of `repeats` after a warm-up) vs per-point autograd Jacobians + slogdet (one
    run, it is slow), the same points in the same run; also their largest difference.

    The per-point reference costs the same for every point, so with `reference_points` it runs on
    only the first that many and its time is scaled to all of x (`autograd_s` is then that
    extrapolation; `autograd_points` says how many points it really timed)."""
    model.eval()
    manifold_log_prob(model, x[:2])
    times = []
    for _ in range(repeats):
        _sync(x)
        start = time.perf_counter()
        ours = manifold_log_prob(model, x)
        _sync(ours)
        times.append(time.perf_counter() - start)
    subset = x if reference_points is None else x[:reference_points]
    _autograd_gram_log_prob(model, subset[:1])  # warm-up (kernel caches, cuBLAS handles)
    _sync(x)
    start = time.perf_counter()
    reference = _autograd_gram_log_prob(model, subset).detach()
    _sync(reference)
    reference_s = (time.perf_counter() - start) * len(x) / len(subset)
    return {"points": len(x), "autograd_points": len(subset), "mfkernels_s": min(times), "autograd_s": reference_s,
            "speedup": reference_s / min(times), "max_abs_diff": float((ours[:len(subset)] - reference).abs().max())}
