"""The exact Gram density of a model's manifold (M-flow's density, paper 000 eq 16) timed two ways in one
run: mfkernels (batched tangents + `ops.gram_logdet`, through `manifold.manifold_log_prob`) against the
route without a fused op, per-point autograd Jacobians + slogdet. Used by `mfkernels bench --models`
and by the dnf-spiral reproduction.

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ..manifold import manifold_log_prob


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
