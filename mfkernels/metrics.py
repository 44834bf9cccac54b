"""How well a model learned a density on a known 1-D manifold (paper 000's thin-spiral comparison), and
how well its samples match the data (closeness and coverage).

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

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

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
    if len(held_out) == 0 or not bool(held_out.isfinite().all()):
        raise ValueError(f"coverage: 'held_out' must hold at least one point and only finite values, got "
                         f"shape {tuple(held_out.shape)}")
    samples = samples.detach().double().cpu()
    samples = samples[samples.isfinite().all(1)]
    if len(samples) == 0:
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
