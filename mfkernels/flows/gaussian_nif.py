"""Gaussian noisy injective flow layer (paper 001, section 4): x = A z + b + ε, ε ~ N(0, Σ), Σ diagonal
and learnable, A of full column rank, dim z ≤ dim x. Every quantity of the layer comes from
`ops.nif_block`:

- `log_marginal(x)`: log p(x) under a unit-Gaussian prior on z, closed form (eq 41);
- `manifold_term(x)`: log ∫ p(x | z) dz = log Z_z − log Z_x (eq 9), the ELBO's second term (eq 7);
- `elbo(x, log_prior)`: E_q[log p(z)] + manifold term with z from the stochastic inverse (eq 7);
- `point_inverse(x)`: z⁺ = Λ⁻¹u (eq 42); `posterior_mean(x)`: (I + Λ)⁻¹u, the mean of p(z | x) under the
  unit prior;
- `sample_inverse(x)`: z ~ q(z | x) = N(Λ⁻¹u, Λ⁻¹) (eq 39, reparameterised); `sample_posterior(x)`: z from
  the exact posterior N((I + Λ)⁻¹u, (I + Λ)⁻¹) under the unit prior;
- `generate(z, noise_scale=s)`: x ~ N(A z + b, s Σ) (section 5.2: s = 0 on the manifold, s = 1 the model).

Two forms share this code. Dense (`GaussianNIF(features, latent_features)`): one N × M matrix, i.e.
one block. Block (`GaussianNIF.upsampling(...)`): nearest-neighbour-style upsampling of a c-channel
latent image by a factor f to a C-channel image (appendix A.6), A block-diagonal after the pixel
permutation of `flows.nif_layout` with P = h w blocks of size (C f²) × c, Λ block-diagonal, cost O(dim z).
Vectors in and out are always flat: x (B, C·fh·fw) in channel-major image order, z (B, c·h·w).

References:
    | Normalizing Flows Across Dimensions (Cunningham et al., 2020)
    | https://arxiv.org/abs/2006.13070
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .. import ops
from . import nif_layout as layout


class GaussianNIF(nn.Module):
    """The dense form: A (features × latent_features), b and log σ per output coordinate.

    A starts as the first `latent_features` columns of a random orthogonal matrix (full column rank),
    b at 0 and σ at `init_sigma`."""

    def __init__(self, features: int, latent_features: int, init_sigma: float = 1.0, *,
                 _blocks: tuple[int, int, int] | None = None, _image: tuple | None = None):
        super().__init__()
        P, r, c = _blocks if _blocks is not None else (1, features, latent_features)
        if not 1 <= c <= r:
            raise ValueError(f"GaussianNIF: need 1 <= latent size <= data size per block, got latent {c}, data {r}")
        if init_sigma <= 0:
            raise ValueError(f"GaussianNIF: 'init_sigma' must be > 0, got {init_sigma}")
        self.blocks, self.image = (P, r, c), _image
        self.features, self.latent_features = P * r, P * c
        tied = _image is not None and _image[-1]
        A = torch.linalg.qr(torch.randn(1 if tied else P, r, r))[0][..., :c]
        self.A = nn.Parameter(A)
        self.b = nn.Parameter(torch.zeros(P, r))
        self.log_sigma = nn.Parameter(torch.full((P, r), math.log(init_sigma)))

    @classmethod
    def upsampling(cls, latent_channels: int, channels: int, factor: int, latent_size: tuple[int, int],
                   init_sigma: float = 1.0, tied: bool = True) -> "GaussianNIF":
        """The block form: a (latent_channels, h, w) latent image to a (channels, factor h, factor w) image.
        tied=True shares one (C f²) × c block over all pixels (a stride-f transposed convolution, the
        paper's upsampling + channel mixing); tied=False learns one block per latent pixel."""
        h, w = latent_size
        r = channels * factor * factor
        return cls(0, 0, init_sigma, _blocks=(h * w, r, latent_channels),
                   _image=(channels, factor, (h, w), tied))

    # layout: flat vectors <-> (B, P, r) / (B, P, c) blocks
    def _x_blocks(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"GaussianNIF: expected x of shape (B, {self.features}), got {tuple(x.shape)}")
        if self.image is None:
            return x[:, None, :]
        C, f, (h, w), _ = self.image
        return layout.image_to_blocks(x.reshape(-1, C, f * h, f * w), f)

    def _x_flat(self, blocks: Tensor) -> Tensor:
        if self.image is None:
            return blocks[:, 0, :]
        C, f, size, _ = self.image
        return layout.blocks_to_image(blocks, f, size).flatten(1)

    def _z_blocks(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_features:
            raise ValueError(f"GaussianNIF: expected z of shape (B, {self.latent_features}), got {tuple(z.shape)}")
        if self.image is None:
            return z[:, None, :]
        return layout.latent_to_blocks(z.reshape(z.shape[0], self.blocks[2], *self.image[2]))

    def _z_flat(self, blocks: Tensor) -> Tensor:
        if self.image is None:
            return blocks[:, 0, :]
        return layout.blocks_to_latent(blocks, self.image[2]).flatten(1)

    def block_matrix(self) -> Tensor:
        """A as (P, r, c) blocks (an expanded view when tied)."""
        return self.A.expand(self.blocks[0], -1, -1)

    def dense_matrix(self) -> Tensor:
        """A as the dense (features × latent_features) matrix in the flat vector orders (for tests and
        the dense baseline; never used by the layer itself)."""
        eye = torch.eye(self.latent_features, dtype=self.A.dtype, device=self.A.device)
        return self._x_flat(torch.einsum("prc,bpc->bpr", self.block_matrix(), self._z_blocks(eye))).T

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return ops.nif_block(self._x_blocks(x), self.block_matrix(), self.b, self.log_sigma)

    def log_marginal(self, x: Tensor) -> Tensor:
        """log p(x) = log N(x; b, A Aᵀ + Σ) with z ~ N(0, I) (eq 41)."""
        return self._stats(x)[0]

    def manifold_term(self, x: Tensor) -> Tensor:
        """log ∫ p(x | z) dz (eq 9)."""
        return self._stats(x)[1]

    def point_inverse(self, x: Tensor) -> Tensor:
        """z⁺ = Λ⁻¹u (eq 42), the projection of x onto the layer's hyperplane in z coordinates."""
        return self._z_flat(self._stats(x)[3])

    def posterior_mean(self, x: Tensor) -> Tensor:
        return self._z_flat(self._stats(x)[2])

    def _precision_factor(self, shift: float) -> Tensor:
        """Cholesky factor of Λ + shift·I per block (P, c, c)."""
        A = self.block_matrix()
        lam = A.mT @ (A * torch.exp(-2 * self.log_sigma).unsqueeze(-1))
        return torch.linalg.cholesky(lam + shift * torch.eye(lam.shape[-1], dtype=lam.dtype, device=lam.device))

    def _gaussian_sample(self, mean_blocks: Tensor, shift: float, generator: torch.Generator | None) -> Tensor:
        L = self._precision_factor(shift)
        eps = torch.randn(mean_blocks.shape, generator=generator, dtype=mean_blocks.dtype, device="cpu")
        # precision L Lᵀ: L⁻ᵀ ε has the covariance (L Lᵀ)⁻¹
        noise = torch.linalg.solve_triangular(L.mT, eps.to(mean_blocks.device).unsqueeze(-1), upper=True)
        return self._z_flat(mean_blocks + noise.squeeze(-1))

    def sample_inverse(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(z ~ q(z | x) = N(Λ⁻¹u, Λ⁻¹), manifold term): the stochastic inverse (eqs 6, 39)."""
        _, manifold, _, z_point = self._stats(x)
        return self._gaussian_sample(z_point, 0.0, generator), manifold

    def sample_posterior(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z ~ p(z | x) = N((I + Λ)⁻¹u, (I + Λ)⁻¹), the exact posterior under the unit-Gaussian prior."""
        return self._gaussian_sample(self._stats(x)[2], 1.0, generator)

    def elbo(self, x: Tensor, log_prior, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(ELBO, z): eq 7 with one reparameterised z ~ q(z | x); `log_prior(z) -> (B,)`."""
        z, manifold = self.sample_inverse(x, generator)
        return log_prior(z) + manifold, z

    def generate(self, z: Tensor, noise_scale: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """x ~ N(A z + b, s Σ) with s = noise_scale (s = 0: the point A z + b on the manifold)."""
        if noise_scale < 0:
            raise ValueError(f"GaussianNIF.generate: 'noise_scale' must be >= 0, got {noise_scale}")
        mean = torch.einsum("prc,bpc->bpr", self.block_matrix(), self._z_blocks(z)) + self.b
        if noise_scale > 0:
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device="cpu").to(mean.device)
            mean = mean + math.sqrt(noise_scale) * torch.exp(self.log_sigma) * eps
        return self._x_flat(mean)
