"""How well a model learned a density on a known 1-D manifold (paper 000's thin-spiral comparison),
and timings of the exact Gram density against autograd.

`density_along_curve` restricts the model's density to the true curve x = g(u), turns it into a
density over u (times |g'(u)|, as the model's manifold density is per unit arc length), renormalises
it over the curve (so full-dimensional models, whose density is per unit area, compare by shape) and
compares it with the true p(u): total variation, KL(true ‖ learned) and the Kolmogorov-Smirnov
distance of the CDFs along the curve (the statistic of the DNF authors' code). `mass` is the learned
density's integral along the curve before renormalising (1 for a correct manifold density).

Sample quality has two sides. The distance of samples to the true manifold (the data sets' `distance`)
asks whether samples lie on it; `coverage` asks the other question, whether they cover it: the distance
from each held-out data point to its nearest sample, and the fraction of held-out points with a sample
within a stated radius (recall). For 1-D manifolds, `ks_two_sample` on the curve parameter of samples
and held-out points (the data sets' `curve_parameter`) compares where along the curve the mass lies.
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
def densities_along_curve(log_prob: Callable[[Tensor], Tensor], curve, num: int = 4000, q_max: float = 0.999,
                          batch_size: int = 4096, dtype=torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    """(u, p(u), q(u)) on the midpoints of num cells of u up to the q_max quantile: the true density
    renormalised to that range and the model's density times |g'(u)|, not renormalised."""
    edges = torch.linspace(0, curve.quantile(q_max), num + 1, dtype=torch.float64)
    u = (edges[1:] + edges[:-1]) / 2
    du = edges[1] - edges[0]
    x = curve.embed(u).to(dtype)
    log_q = torch.cat([log_prob(chunk).double() for chunk in x.split(batch_size)])
    q = torch.nan_to_num(log_q.exp(), nan=0.0, posinf=0.0) * curve.speed(u)
    p = curve.latent_log_prob(u).exp()
    return u, p / (p.sum() * du), q


@torch.no_grad()
def density_along_curve(log_prob: Callable[[Tensor], Tensor], curve, num: int = 4000,
                        q_max: float = 0.999, batch_size: int = 4096, dtype=torch.float32) -> dict[str, float]:
    """Compares exp(log_prob) on the curve with its true density; `curve` has embed(u), speed(u),
    latent_log_prob(u) and quantile(q) (e.g. data.ThinSpiral). Midpoint rule on num cells of u up to
    the q_max quantile; the true density is renormalised to that range too."""
    u, p, q = densities_along_curve(log_prob, curve, num, q_max, batch_size, dtype)
    du = u[1] - u[0]
    mass = float(q.sum() * du)
    if not mass > 0:
        return {"tv": 1.0, "kl": math.inf, "ks": 1.0, "mass": mass}
    qn = q / (q.sum() * du)
    tv = 0.5 * float((p - qn).abs().sum() * du)
    kl = float((p * (p.log() - qn.clamp_min(KL_FLOOR).log())).sum() * du)
    ks = float((torch.cumsum(p, 0) * du - torch.cumsum(qn, 0) * du).abs().max())
    return {"tv": tv, "kl": kl, "ks": ks, "mass": mass}


@torch.no_grad()
def coverage(held_out: Tensor, samples: Tensor, radius: float, batch_size: int = 1024) -> dict[str, float]:
    """Whether samples cover the data: per held-out point the Euclidean distance to its nearest
    sample; their mean, median and 90 % quantile, and `recall`, the fraction within `radius`. Samples
    with a non-finite coordinate are left out (they cover nothing)."""
    if held_out.ndim != 2 or samples.ndim != 2 or held_out.shape[1] != samples.shape[1]:
        raise ValueError(f"coverage: need held_out (n, D) and samples (m, D) with the same D, got "
                         f"{tuple(held_out.shape)} and {tuple(samples.shape)}")
    if not radius > 0:
        raise ValueError(f"coverage: 'radius' must be > 0, got {radius}")
    samples = samples.detach().double().cpu()
    samples = samples[samples.isfinite().all(1)]
    if len(samples) == 0 or len(held_out) == 0:
        return {"radius": radius, "recall": 0.0, "mean": math.inf, "median": math.inf, "q90": math.inf}
    nearest = torch.cat([torch.cdist(chunk, samples).min(1).values
                         for chunk in held_out.detach().double().cpu().split(batch_size)])
    return {"radius": radius, "recall": float((nearest <= radius).double().mean()), "mean": float(nearest.mean()),
            "median": float(nearest.median()), "q90": float(nearest.quantile(0.9))}


def ks_two_sample(a: Tensor, b: Tensor) -> float:
    """Kolmogorov-Smirnov distance between the empirical CDFs of two 1-D samples (non-finite values
    dropped; 1.0 when either side is empty)."""
    a, b = (v.detach().double().cpu().flatten() for v in (a, b))
    a, b = a[a.isfinite()].sort().values, b[b.isfinite()].sort().values
    if len(a) == 0 or len(b) == 0:
        return 1.0
    at = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, at, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b, at, right=True).double() / len(b)
    return float((cdf_a - cdf_b).abs().max())


def sample_quality(data, held_out: Tensor, samples: Tensor, radius: float) -> dict[str, object]:
    """Both sides of sample quality on a data set with `distance` (and, for 1-D manifolds,
    `curve_parameter`): closeness (samples' distance to the manifold: mean, median, 90 % quantile; a
    non-finite sample counts as infinitely far), coverage of held-out points at `radius`, and the KS
    distance along the curve."""
    samples = samples.detach().double().cpu()
    finite = samples.isfinite().all(1)
    distance = torch.full((len(samples),), math.inf, dtype=torch.float64)
    if finite.any():
        distance[finite] = data.distance(samples[finite]).double()
    out: dict[str, object] = {
        "sample_distance": {"mean": float(distance[finite].mean()) if finite.any() else math.inf,
                            "median": float(distance.median()), "q90": float(distance.quantile(0.9)),
                            "nonfinite": int((~finite).sum())},
        "coverage": coverage(held_out, samples, radius)}
    if hasattr(data, "curve_parameter"):
        out["ks_along_curve"] = ks_two_sample(data.curve_parameter(samples[finite]), data.curve_parameter(held_out))
    return out


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
