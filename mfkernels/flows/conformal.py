"""Conformal dimension-raising maps, one per chart (paper 004's c_k, after conformal embedding flows,
Ross & Cresswell 2021): c_k: R^d → R^D,

    δ = e^{s_k} U_k y,     x = t_k + (δ + b_k ‖δ‖²) / σ_k(δ),     σ_k(δ) = 1 + 2 b_k·δ + ‖b_k‖² ‖δ‖²,

U_k a D × d orthonormal frame (the first d columns of base_k · exp(A_k), A_k skew-symmetric) and the
second step the special conformal transformation with vector b_k (a sphere inversion composed with a
reflection; identity at b = 0). J = ∂x/∂y satisfies JᵀJ = λ(y)² I_d with log λ = s_k − log σ_k(δ), so
a chart's Gram term is analytic. With b_k ≠ 0 normal to the frame the d-plane bends into a d-sphere of
radius 1/(2‖b_k‖) through t_k, so one chart covers a circle (or sphere) minus a point; b = 0 is flat.
(By Liouville's theorem, for D ≥ 3 these are all the conformal maps there are: planes and spheres.)
The parametrisation is smooth through b = 0, so charts start flat and learn their curvature.

`inverse(x, k)` is the left inverse c_k^†: the inverse transformation (vector −b_k), then the affine
part, keeping the d in-frame coordinates: for x on the chart's manifold it inverts c_k exactly; off it,
c_k(c_k^†(x)) is the point of the manifold the chart maps x to (the reconstruction).

References:
    | Chart flows (a poster)
    | docs/papers.md, paper 004
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def special_conformal(p: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """(p + b‖p‖²) / σ, σ = 1 + 2 b·p + ‖b‖²‖p‖², row-wise, and log σ (its conformal factor is 1/σ).
    The inverse is the same map with −b."""
    squared = p.square().sum(-1, keepdim=True)
    sigma = 1 + 2 * (b * p).sum(-1, keepdim=True) + b.square().sum(-1, keepdim=True) * squared
    # σ = ‖p‖²‖b + p/‖p‖²‖² ≥ 0 vanishes only at the point sent to infinity: keep it finite there
    sigma = sigma.clamp_min(torch.finfo(sigma.dtype).tiny)
    return (p + b * squared) / sigma, torch.log(sigma[:, 0])


class ChartConformalMaps(nn.Module):
    """K conformal maps R^d → R^D; every call takes the chart index of each sample, `k` (B,) long.

    Args: num_charts K, manifold_dim d < D = features, curved (the special conformal step on/off),
    scale: the initial e^{s_k}."""

    def __init__(self, num_charts: int, manifold_dim: int, features: int, curved: bool = True, scale: float = 1.0):
        super().__init__()
        if not 1 <= manifold_dim < features or num_charts < 1:
            raise ValueError(f"ChartConformalMaps: need 1 <= manifold_dim < features and num_charts >= 1, got "
                             f"manifold_dim={manifold_dim}, features={features}, num_charts={num_charts}")
        K, d, D = num_charts, manifold_dim, features
        self.manifold_dim, self.features, self.curved = d, D, curved
        self.register_buffer("base", torch.eye(D).expand(K, D, D).clone())
        self.rotation = nn.Parameter(torch.zeros(K, D, D))  # skew part taken in frames()
        self.log_scale = nn.Parameter(torch.full((K,), math.log(scale)))
        self.shift = nn.Parameter(torch.zeros(K, D))
        self.bend = nn.Parameter(torch.zeros(K, D))

    def frames(self) -> Tensor:
        """(K, D, d) orthonormal frames U_k."""
        skew = self.rotation - self.rotation.mT
        return (self.base @ torch.linalg.matrix_exp(skew))[..., : self.manifold_dim]

    @torch.no_grad()
    def set_chart(self, k: int, origin: Tensor, frame: Tensor, scale: float, bend: Tensor | None = None) -> None:
        """Place chart k: t_k = origin, U_k = the first d columns of `frame` (D × D orthogonal), e^{s_k} = scale,
        b_k = bend (default 0: flat)."""
        self.base[k] = frame.to(self.base)
        self.rotation[k].zero_()
        self.shift[k] = origin.to(self.shift)
        self.log_scale[k] = math.log(scale)
        self.bend[k] = 0.0 if bend is None else bend.to(self.bend)

    def forward(self, y: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """y (B, d) → (x (B, D), log λ (B,))."""
        if y.dim() != 2 or y.shape[1] != self.manifold_dim or k.shape != y.shape[:1]:
            raise ValueError(f"ChartConformalMaps: expected y (B, {self.manifold_dim}) and k (B,), got "
                             f"{tuple(y.shape)} and {tuple(k.shape)}")
        delta = self.log_scale[k].exp()[:, None] * (self.frames()[k] @ y[:, :, None])[..., 0]
        log_lambda = self.log_scale[k]
        if self.curved:
            delta, log_sigma = special_conformal(delta, self.bend[k])
            log_lambda = log_lambda - log_sigma
        return self.shift[k] + delta, log_lambda

    def inverse(self, x: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, D) → (c_k^†(x) (B, d), log λ at that point (B,))."""
        if x.dim() != 2 or x.shape[1] != self.features or k.shape != x.shape[:1]:
            raise ValueError(f"ChartConformalMaps: expected x (B, {self.features}) and k (B,), got "
                             f"{tuple(x.shape)} and {tuple(k.shape)}")
        delta, log_lambda = x - self.shift[k], self.log_scale[k]
        if self.curved:
            delta, log_sigma = special_conformal(delta, -self.bend[k])
            log_lambda = log_lambda + log_sigma  # σ_b(δ) σ_{−b}(x − t) = 1
        y = (self.frames()[k].mT @ delta[:, :, None])[..., 0] * (-self.log_scale[k]).exp()[:, None]
        return y, log_lambda
