"""The architecture DNF, M-flow and PIE share (paper 000 eq. 9-13, figure 1): an outer flow f with
f(x) = z = (u, v), u the first d coordinates (on the manifold), v the D - d others, and a flow h on u
with a standard normal base, u' = h(u). The generator is g(u') = f⁻¹(Pad(h⁻¹(u'))) (eq. 10) and the
denoiser/projection r(x) = f⁻¹(Pad(Proj_u f(x))) (eq. 11).

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import manifold
from ..flows import standard_normal_log_prob
from .base import Model


def gaussian_log_prob(v: Tensor, std: float) -> Tensor:
    """log N(v; 0, std² I) summed over the last dim."""
    k = v.shape[-1]
    return -0.5 * v.square().sum(-1) / std**2 - k * (math.log(std) + 0.5 * math.log(2 * math.pi))


class SplitFlowModel(Model):
    """f, h and the maps built from them; subclasses choose the loss and the density."""

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.outer = self.config.build_flow()
        self.inner = self.config.build_flow(inner=True)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x -> (u, v, log|det ∂f/∂x|)."""
        self._check_input(x)
        z, logabsdet = self.outer(x)
        d = self.config.manifold_dim
        return z[:, :d], z[:, d:], logabsdet

    def pad(self, u: Tensor) -> Tensor:
        return torch.cat([u, u.new_zeros(u.shape[0], self.config.features - u.shape[1])], dim=1)

    def reconstruct(self, u: Tensor) -> Tensor:
        """f⁻¹(Pad(u)): manifold coordinates u (before h) to data space."""
        return self.outer.inverse(self.pad(u))[0]

    def encode(self, x: Tensor) -> Tensor:
        u, _, _ = self.split(x)
        return self.inner(u)[0]

    def decode(self, u: Tensor) -> Tensor:
        self._check_latent(u)
        return self.reconstruct(self.inner.inverse(u)[0])

    def full_log_prob(self, x: Tensor, off_manifold_std: float) -> tuple[Tensor, Tensor, Tensor]:
        """The D-dimensional density log p(u')+log|det ∂h/∂u| + log N(v; 0, std²) + log|det ∂f/∂x|
        (eq. 13); returns (log q(x), u, v)."""
        u, v, logdet_f = self.split(x)
        return self.density_from_split(u, v, logdet_f, off_manifold_std), u, v

    def density_from_split(self, u: Tensor, v: Tensor, logdet_f: Tensor, off_manifold_std: float) -> Tensor:
        """full_log_prob's density from an already computed split f(x) = (u, v)."""
        u_prime, logdet_h = self.inner(u)
        return standard_normal_log_prob(u_prime) + logdet_h + gaussian_log_prob(v, off_manifold_std) + logdet_f

    def gram_log_prob(self, x: Tensor) -> Tensor:
        """Exact density on the learned manifold at the projection of x (M-flow, eq. 16)."""
        return manifold.manifold_log_prob(self, x)
