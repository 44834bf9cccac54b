"""Reference twin of `mfkernels.ops.rq_spline`: the rational-quadratic spline of Neural Spline
Flows (Durkan et al. 2019, eqs 4-6; the elementwise transform of papers 000-004's spline couplings),
written plainly with autograd and masks-by-`where`, so it also works under torch.func transforms.

Semantics follow nflows' `unconstrained_rational_quadratic_spline` (tails="linear": identity outside
[-B, B], outer knot derivatives fixed to ~1) and `rational_quadratic_spline` on [-B, B]^2
(tails=None: all K + 1 derivatives learnable, inputs must lie inside).

References:
    | Neural Spline Flows (Durkan et al., 2019)
    | https://arxiv.org/abs/1906.04032
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _knots(unnormalized: Tensor, min_size: float, bound: float) -> Tensor:
    """K + 1 knot positions from K logits: softmax, floor at min_size, cumulative sum on [-B, B]."""
    K = unnormalized.shape[-1]
    sizes = min_size + (1 - min_size * K) * torch.softmax(unnormalized, dim=-1)
    inner = 2 * bound * torch.cumsum(sizes, dim=-1)[..., :-1] - bound
    edge = inner.new_full((*inner.shape[:-1], 1), bound)
    return torch.cat([-edge, inner, edge], dim=-1)


def _pick(values: Tensor, index: Tensor) -> Tensor:
    return values.gather(-1, index[..., None])[..., 0]


def rq_spline(
    inputs: Tensor, unnormalized_widths: Tensor, unnormalized_heights: Tensor, unnormalized_derivatives: Tensor,
    inverse: bool = False, tails: str | None = "linear", tail_bound: float = 1.0, min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3, min_derivative: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    shape = torch.broadcast_shapes(
        inputs.shape, unnormalized_widths.shape[:-1], unnormalized_heights.shape[:-1],
        unnormalized_derivatives.shape[:-1],
    )
    x = inputs.expand(shape)
    uw, uh, ud = (
        t.expand(*shape, t.shape[-1]) for t in (unnormalized_widths, unnormalized_heights, unnormalized_derivatives)
    )
    B = float(tail_bound)
    derivatives = min_derivative + F.softplus(ud)
    if tails == "linear":
        boundary = min_derivative + F.softplus(torch.tensor(math.log(math.expm1(1 - min_derivative)), dtype=x.dtype))
        edge = boundary.to(x.device).expand(*shape, 1)
        derivatives = torch.cat([edge, derivatives, edge], dim=-1)
    inside = (x >= -B) & (x <= B)
    v = torch.where(inside, x, torch.zeros_like(x))  # keeps the unused branch finite for autograd

    X, Y = _knots(uw, min_bin_width, B), _knots(uh, min_bin_height, B)
    search = Y if inverse else X
    k = ((v[..., None] >= search[..., 1:-1]).sum(-1)).clamp(max=uw.shape[-1] - 1)
    x0, x1, y0, y1 = _pick(X, k), _pick(X, k + 1), _pick(Y, k), _pick(Y, k + 1)
    d0, d1 = _pick(derivatives, k), _pick(derivatives, k + 1)
    w, h = x1 - x0, y1 - y0
    s = h / w
    if inverse:
        dy = v - y0
        m = d0 + d1 - 2 * s
        a = dy * m + h * (s - d0)
        b = h * d0 - dy * m
        c = -s * dy
        theta = 2 * c / (-b - torch.sqrt((b * b - 4 * a * c).clamp(min=0)))
        out = theta * w + x0
    else:
        theta = (v - x0) / w
    q = theta * (1 - theta)
    den = s + (d0 + d1 - 2 * s) * q
    lad = torch.log(s**2 * (d1 * theta**2 + 2 * s * q + d0 * (1 - theta) ** 2)) - 2 * torch.log(den)
    if inverse:
        lad = -lad
    else:
        out = y0 + h * (s * theta**2 + d0 * q) / den
    if tails == "linear":
        return torch.where(inside, out, x), torch.where(inside, lad, torch.zeros_like(lad))
    nan = torch.full_like(x, float("nan"))
    return torch.where(inside, out, nan), torch.where(inside, lad, nan)
