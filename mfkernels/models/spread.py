"""Spread flow (Zhang et al., paper 003): a volume-preserving flow g: x -> z with a learnable degenerate
Gaussian prior N(0, AAᵀ), A lower triangular (init I), trained with the spread KL (eqs 12-13):

    loss = -1/N Σ log N(z̃_n; 0, AAᵀ + σ_Z² I),  z̃_n = g(x_n) + N(0, σ_Z² I),  σ_Z² = 1e-4,

with `ops.tril_gaussian_log_prob`. Since g preserves volume (affine couplings with s - mean(s), logabsdet
exactly 0) nothing else enters. Optional: Gaussian input noise σ_x on x, annealed (×0.9 every
`anneal_every` steps after `anneal_start`, floor `min_input_noise`; section 5) and the entropy
approximation of appendix B.4 (eq 39: -H ≈ 1/N Σ_n log q̂(z^n), q̂ the batch's Gaussian mixture).

The intrinsic dimension K is the number of eigenvalues of AAᵀ above the spectral gap
(`ops.intrinsic_dimension`); encode/decode use its top-K eigenvectors E_K and eigenvalues Λ_K
(u = Λ_K^{-1/2} E_Kᵀ g(x), x = g⁻¹(E_K Λ_K^{1/2} u)), so sample() draws from the degenerate prior and its
samples lie on the learned manifold; project(x, k) is the nonlinear PCA of section 3.

References:
    | Spread Flows for Manifold Modelling (Zhang et al., 2021)
    | https://arxiv.org/abs/2109.14216
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from .. import flows, ops
from .base import Model, ModelConfig, seeded


@dataclasses.dataclass
class SpreadFlowConfig(ModelConfig):
    """`manifold_dim` is not used (the dimension is learned). prior_noise_std: σ_Z; input_noise_std: σ_x
    (0 disables); entropy: add the appendix B.4 entropy term; dimension_gap: the eigenvalue ratio that
    counts as the gap for the intrinsic dimension; permutation: between couplings, "random" (seeded) or
    "roll" (a cyclic shift by one, which pairs every feature with every other within D layers: on the
    3-D S-curve it flattens the surface where random orders kept pairing the same coordinates)."""

    num_layers: int = 8
    prior_noise_std: float = 1e-2
    input_noise_std: float = 0.0
    anneal_start: int = 0
    anneal_every: int = 1000
    anneal_factor: float = 0.9
    min_input_noise: float = 0.0
    entropy: bool = False
    dimension_gap: float = 100.0
    permutation: str = "random"

    def validate(self) -> None:
        if self.features < 2:
            raise ValueError(
                f"SpreadFlowConfig: 'features' must be >= 2 (a coupling needs two parts), got {self.features}"
            )
        if self.prior_noise_std <= 0 or self.input_noise_std < 0:
            raise ValueError("SpreadFlowConfig: need prior_noise_std > 0 and input_noise_std >= 0")
        self.check_choice("permutation", ("random", "roll"))
        self.check_backbone(("spline",))  # its volume-preserving flow is its own


class SpreadFlow(Model):
    config_class = SpreadFlowConfig
    name = "spread"

    def __init__(self, config: SpreadFlowConfig | None = None, **options):
        super().__init__(config, **options)
        c = self.config
        with seeded(c.seed):
            layers: list[flows.Transform] = []
            for i in range(c.num_layers):
                layers.append(flows.AffineCoupling(c.features, flows.alternating_mask(c.features, even=i % 2 == 0),
                                                   mode="volume_preserving", hidden_features=c.hidden_features))
                if c.features > 2:
                    order = (torch.arange(1, c.features + 1) % c.features if c.permutation == "roll" else "random")
                    layers.append(flows.Permutation(c.features, order, seed=c.seed + i))
            self.flow = flows.Sequential(*layers)
        self.A = nn.Parameter(torch.eye(c.features))
        self.step = 0

    def begin_step(self, step: int) -> None:
        self.step = step

    def input_noise(self) -> float:
        c = self.config
        if c.input_noise_std == 0:
            return 0.0
        decays = max(self.step - c.anneal_start, 0) // c.anneal_every
        return max(c.input_noise_std * c.anneal_factor**decays, c.min_input_noise)

    def prior_factor(self) -> Tensor:
        return torch.tril(self.A)

    def intrinsic_dimension(self) -> int:
        return int(ops.intrinsic_dimension(self.prior_factor().detach(), min_gap=self.config.dimension_gap))

    def spectrum(self) -> Tensor:
        """Eigenvalues of AAᵀ, largest first."""
        return ops.spectrum(self.prior_factor().detach())[0]

    def _eigen(self, k: int | None) -> tuple[Tensor, Tensor]:
        eigenvalues, eigenvectors = ops.spectrum(self.prior_factor().detach())
        k = self.intrinsic_dimension() if k is None else k
        return eigenvalues[:k], eigenvectors[:, :k]

    @property
    def latent_dim(self) -> int:
        return self.intrinsic_dimension()

    def encode(self, x: Tensor, k: int | None = None) -> Tensor:
        self._check_input(x)
        values, vectors = self._eigen(k)
        return (self.flow(x)[0] @ vectors) / values.sqrt()

    def decode(self, u: Tensor) -> Tensor:
        """x for coordinates u on the top-k eigenvectors, k = u.shape[1] (1 <= k <= features)."""
        if isinstance(u, Tensor) and u.dim() == 2 and 1 <= u.shape[1] <= self.config.features:
            self._check_latent(u, u.shape[1])
        else:
            self._check_latent(u, self.latent_dim)
        values, vectors = self._eigen(u.shape[1])
        return self.flow.inverse((u * values.sqrt()) @ vectors.T)[0]

    def project(self, x: Tensor, k: int | None = None) -> Tensor:
        return self.decode(self.encode(x, k))

    def log_prob(self, x: Tensor) -> Tensor:
        """The spread density log N(g(x); 0, AAᵀ + σ_Z² I) (g preserves volume)."""
        self._check_input(x)
        return self.prior_log_prob(self.flow(x)[0])

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """log N(z; 0, AAᵀ + σ_Z² I) (eq 12). The op reads A's lower triangle only (its gradient is zero
        above), so A goes in as it is: a tril copy and its backward, two D x D passes, are saved."""
        return ops.tril_gaussian_log_prob(z, self.A, self.config.prior_noise_std)

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self._check_input(x)
        c = self.config
        noise = self.input_noise()
        if noise:
            x = x + noise * torch.randn_like(x)
        z, _ = self.flow(x)
        z_noisy = z + c.prior_noise_std * torch.randn_like(z)
        nll = -self.prior_log_prob(z_noisy).mean()
        terms = {"spread_nll": nll.detach(), "input_noise": torch.tensor(noise)}
        total = nll
        if c.entropy:
            neg_entropy = self.negative_entropy(z)
            total = total + neg_entropy
            terms["negative_entropy"] = neg_entropy.detach()
        return total, terms

    def negative_entropy(self, z: Tensor) -> Tensor:
        """Eq 39: 1/N Σ_n log q̂(z^n), q̂ = 1/N Σ_m N(·; z^m, σ_Z² I) over the batch."""
        s2 = self.config.prior_noise_std**2
        D = z.shape[1]
        log_kernel = -0.5 * torch.cdist(z, z).square() / s2 - 0.5 * D * math.log(2 * math.pi * s2)
        return (torch.logsumexp(log_kernel, dim=1) - math.log(z.shape[0])).mean()
