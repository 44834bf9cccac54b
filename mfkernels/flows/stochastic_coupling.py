"""Stochastic coupling (paper 001, appendix A.7, eq 40): the coupling idea with a Gaussian NIF in place
of the elementwise map. The input splits into (x1, x2); x1 = z1 passes unchanged and

    x2 ~ N(A z2 + b(x1), Σ),   z2 ∈ R^m, x2 ∈ R^n, m ≤ n,

so the layer maps (z1, z2) ∈ R^{d1+m} to (x1, x2) ∈ R^{d1+n}. Inference draws z2 from the stochastic
inverse q(z2 | x2; x1) and the manifold term log ∫ p(x2 | z2; x1) dz2 (eq 9) takes the place of the log
Jacobian determinant in the ELBO. With a unit-Gaussian (z1, z2) the marginal is closed form:
log N(x1; 0, I) + log N(x2; b(x1), A Aᵀ + Σ) (eq 41 per sample).

Eq 40 also conditions Σ on the other half; here only the shift b(x1) is conditioned (an MLP), Σ is a
learnable diagonal shared by all samples, because `ops.nif_block` factors one precision per block for
the whole batch (a per-sample Σ would need one c × c factorisation per sample).

References:
    | Normalizing Flows Across Dimensions (Cunningham et al., 2020)
    | https://arxiv.org/abs/2006.13070
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .conditioners import MLP
from .flow import standard_normal_log_prob
from .gaussian_nif import GaussianNIF


class StochasticCoupling(nn.Module):
    """features: d1 + n (data side); identity_features: d1; latent_features: m (of the second half)."""

    def __init__(self, features: int, identity_features: int, latent_features: int, hidden_features: int = 64,
                 init_sigma: float = 1.0):
        super().__init__()
        n = features - identity_features
        if identity_features < 1 or n < 1:
            raise ValueError(f"StochasticCoupling: need 1 <= identity_features < features, got "
                             f"{identity_features} of {features}")
        self.split = identity_features
        self.nif = GaussianNIF(n, latent_features, init_sigma)
        self.shift = MLP(identity_features, n, hidden_features)
        self.features, self.latent_features = features, identity_features + latent_features

    def _centred(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"StochasticCoupling: expected x of shape (B, {self.features}), got {tuple(x.shape)}")
        x1, x2 = x[:, :self.split], x[:, self.split:]
        return x1, x2 - self.shift(x1)  # the NIF depends on x2 only through x2 - b, so shift it there

    def sample_inverse(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(z = (x1, z2) with z2 ~ q(z2 | x2; x1), manifold term (B,))."""
        x1, centred = self._centred(x)
        z2, manifold = self.nif.sample_inverse(centred, generator)
        return torch.cat([x1, z2], 1), manifold

    def point_inverse(self, x: Tensor) -> Tensor:
        x1, centred = self._centred(x)
        return torch.cat([x1, self.nif.point_inverse(centred)], 1)

    def log_marginal(self, x: Tensor) -> Tensor:
        """log p(x1, x2) with z ~ N(0, I)."""
        x1, centred = self._centred(x)
        return standard_normal_log_prob(x1) + self.nif.log_marginal(centred)

    def elbo(self, x: Tensor, log_prior, generator: torch.Generator | None = None) -> Tensor:
        z, manifold = self.sample_inverse(x, generator)
        return log_prior(z) + manifold

    def generate(self, z: Tensor, noise_scale: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_features:
            raise ValueError(
                f"StochasticCoupling: expected z of shape (B, {self.latent_features}), got {tuple(z.shape)}"
            )
        z1, z2 = z[:, :self.split], z[:, self.split:]
        return torch.cat([z1, self.nif.generate(z2, noise_scale, generator) + self.shift(z1)], 1)
