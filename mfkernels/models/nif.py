"""Noisy injective flow (Cunningham et al., paper 001): x = f⁻¹(y), y = A z + b + ε (the Gaussian NIF
layer, `flows.GaussianNIF`), z = h⁻¹(w), w ~ N(0, I): a full-dimensional flow f on x, the NIF layer
changing dimension, and optionally a low-dimensional flow h on z (the "deep NIF" of appendix B.5).

Training objective (`objective`):
- "marginal": the exact log p(x) = log p_NIF(f(x)) + log|det ∂f/∂x| with the closed-form marginal of
  eq 41 (unit-Gaussian z; needs inner_layers = 0, the paper's experiments);
- "elbo": eq 7, E_q[log p(z)] + log ∫ p(y | z) dz + log|det ∂f/∂x| with one z from the stochastic inverse
  q(z | y) (eq 6), p(z) the inner flow's density.
`log_prob` is exact without an inner flow; with one it is the importance-weighted bound with
`num_importance` draws of the stochastic inverse (the weights are p(z) · ∫ p(y | z') dz', since
q(z | y) = p(y | z) / ∫ p(y | z') dz').

Sampling: w ~ N(0, t² I) (temperature t), y ~ N(A z + b, s Σ) (noise_scale s: 0 on the manifold, 1 the
model). encode is the point inverse z⁺ (eq 42) through h; decode the on-manifold map.
Image data use the block (upsampling) form: `upsample_factor` f > 0 with `image_channels` C makes the
latent a (c, H/f, W/f) image, c = manifold_dim / (H W / f²).

References:
    | Normalizing Flows Across Dimensions (Cunningham et al., 2020)
    | https://arxiv.org/abs/2006.13070
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from ..flows import GaussianNIF, standard_normal_log_prob
from .base import Model, ModelConfig, seeded


@dataclasses.dataclass
class NIFConfig(ModelConfig):
    """manifold_dim: dim z; inner_layers: the flow on z (0: none, a unit-Gaussian z); objective:
    "marginal" | "elbo"; upsample_factor: 0 for a dense A, else the block form on square images of
    `image_channels` channels; tied_blocks: one shared block (a transposed convolution) or one per pixel;
    init_sigma: Σ's initial standard deviation; num_importance: draws for log_prob with an inner flow."""

    inner_layers: int = 0
    objective: str = "marginal"
    upsample_factor: int = 0
    image_channels: int = 1
    tied_blocks: bool = True
    init_sigma: float = 0.5
    num_importance: int = 16

    def validate(self) -> None:
        super().validate()
        self.check_choice("objective", ("marginal", "elbo"))
        if self.objective == "marginal" and self.inner_layers:
            raise ValueError("NIFConfig: objective='marginal' needs inner_layers=0 (the eq-41 marginal is closed "
                             "form only for a unit-Gaussian z); use objective='elbo' with an inner flow")
        if self.upsample_factor:
            self.image_geometry()

    def image_geometry(self) -> tuple[int, int, tuple[int, int]]:
        """(latent channels c, data channels C, latent size (h, w)) of the block form."""
        C, f = self.image_channels, self.upsample_factor
        side = math.isqrt(self.features // C) if C > 0 and self.features % C == 0 else 0
        if side * side * C != self.features or side % f:
            raise ValueError(f"NIFConfig: features={self.features} is not a square image of image_channels={C} "
                             f"channels with a side divisible by upsample_factor={f}")
        h = side // f
        if self.manifold_dim % (h * h):
            raise ValueError(f"NIFConfig: manifold_dim={self.manifold_dim} must be a multiple of the latent image's "
                             f"{h}x{h} pixels")
        c = self.manifold_dim // (h * h)
        if c > C * f * f:
            raise ValueError(f"NIFConfig: {c} latent channels exceed the {C * f * f} outputs of each upsampling block")
        return c, C, (h, h)


class NIF(Model):
    config_class = NIFConfig
    name = "nif"

    def __init__(self, config: NIFConfig | None = None, **options):
        super().__init__(config, **options)
        c = self.config
        self.flow = c.build_flow()
        self.inner = c.build_flow(inner=True) if c.inner_layers else None
        with seeded(c.seed + 2000):
            if c.upsample_factor:
                channels, C, size = c.image_geometry()
                self.nif = GaussianNIF.upsampling(channels, C, c.upsample_factor, size, c.init_sigma, c.tied_blocks)
            else:
                self.nif = GaussianNIF(c.features, c.manifold_dim, c.init_sigma)

    def log_prior(self, z: Tensor) -> Tensor:
        if self.inner is None:
            return standard_normal_log_prob(z)
        w, logabsdet = self.inner(z)
        return standard_normal_log_prob(w) + logabsdet

    def log_prob(self, x: Tensor) -> Tensor:
        self._check_input(x)
        y, logabsdet = self.flow(x)
        if self.inner is None:
            return self.nif.log_marginal(y) + logabsdet
        K = self.config.num_importance
        z, manifold = self.nif.sample_inverse(y.repeat(K, 1))
        log_w = (self.log_prior(z) + manifold).reshape(K, -1)
        return torch.logsumexp(log_w, 0) - math.log(K) + logabsdet

    def elbo(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(ELBO, likelihood term, manifold term + log|det ∂f/∂x|), each (B,)."""
        y, logabsdet = self.flow(x)
        z, manifold = self.nif.sample_inverse(y)
        likelihood = self.log_prior(z)
        return likelihood + manifold + logabsdet, likelihood, manifold + logabsdet

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self._check_input(x)
        if self.config.objective == "marginal":
            nll = -self.log_prob(x).mean()
            return nll, {"nll": nll.detach()}
        elbo, likelihood, manifold = self.elbo(x)
        loss = -elbo.mean()
        return loss, {"negative_elbo": loss.detach(), "likelihood_term": likelihood.mean().detach(),
                      "manifold_term": manifold.mean().detach()}

    def encode(self, x: Tensor) -> Tensor:
        self._check_input(x)
        z = self.nif.point_inverse(self.flow(x)[0])
        return z if self.inner is None else self.inner(z)[0]

    def decode(self, u: Tensor, noise_scale: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        self._check_latent(u)
        z = u if self.inner is None else self.inner.inverse(u)[0]
        return self.flow.inverse(self.nif.generate(z, noise_scale, generator))[0]

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               noise_scale: float = 1.0) -> Tensor:
        """n samples with prior temperature t and test-time noise scale s (s = 0: on the manifold)."""
        p = self._param()
        w = torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype, device="cpu").to(p.device)
        return self.decode(w * temperature, noise_scale, generator)
