"""Ready-made stacks of layers, so models and examples build the usual architecture in one call.

`realnvp_flow` is the affine-coupling baseline. `rq_spline_flow` is the neural-spline architecture of
the M-flow and DNF experiments (paper 000,
section 5: rational-quadratic spline couplings with learned linear mixing between them): per layer an
RQ spline coupling on alternating halves followed by an LU-parametrised invertible linear map. On a
single feature it becomes a stack of elementwise splines.

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
    | Chart flows (a poster)
    | docs/papers.md, paper 004
"""

from __future__ import annotations

from .base import Sequential, Transform
from .coupling import AffineCoupling, RQSplineCoupling, alternating_mask
from .elementwise import ElementwiseRQSpline
from .linear import LULinear


def rq_spline_flow(features: int, num_layers: int = 4, num_bins: int = 8, tail_bound: float = 3.0,
                   hidden_features: int = 64, context_features: int = 0, linear: bool = True,
                   seed: int = 0) -> Transform:
    """A (features -> features) flow: num_layers x [RQSplineCoupling, LULinear] for features >= 2
    (masks alternate; `linear=False` drops the LULinear mixing), num_layers elementwise splines for 1."""
    if features < 1 or num_layers < 1:
        raise ValueError(f"rq_spline_flow: 'features' and 'num_layers' must be >= 1, got {features}, {num_layers}")
    if features == 1:
        return Sequential(*[ElementwiseRQSpline(1, num_bins, tail_bound, context_features, hidden_features)
                            for _ in range(num_layers)])
    layers: list[Transform] = []
    for i in range(num_layers):
        layers.append(RQSplineCoupling(features, num_bins=num_bins, tail_bound=tail_bound,
                                       mask=alternating_mask(features, even=i % 2 == 0),
                                       context_features=context_features, hidden_features=hidden_features))
        if linear:
            layers.append(LULinear(features, seed=seed + i))
    return Sequential(*layers)


def realnvp_flow(features: int, num_layers: int = 4, hidden_features: int = 64, context_features: int = 0,
                 seed: int = 0) -> Transform:
    """RealNVP (Dinh et al. 2017) on vectors: num_layers x [affine coupling (soft-clamped scale, alternating
    masks), LULinear]; the usual full-dimensional baseline (paper 004's toy comparison)."""
    if features < 2 or num_layers < 1:
        raise ValueError(f"realnvp_flow: need features >= 2 and num_layers >= 1, got {features}, {num_layers}")
    layers: list[Transform] = []
    for i in range(num_layers):
        layers += [AffineCoupling(features, mask=alternating_mask(features, even=i % 2 == 0),
                                  context_features=context_features, hidden_features=hidden_features),
                   LULinear(features, seed=seed + i)]
    return Sequential(*layers)
