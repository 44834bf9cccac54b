"""Denoising Normalizing Flow (Horvat & Pfister, paper 000 section 3 and its algorithm).

Training inflates the data, x̃ = x + N(0, σ²I), fits q(x̃) with the split flow whose off-manifold
part v has base N(0, σ²I), and denoises: loss = -log q(x̃) + λ‖x - f⁻¹(Pad(u(x̃)))‖² (eq. 14).
The density on the manifold deflates the inflated one (eq. 8 and section 5.1): p(x) = q(x) / q_σ(x|x)
with q_σ(x|x) = (2πσ²)^(-(D-d)/2), and p(x) = 0 where ‖v(x)‖ > σ/3 (x is then off the manifold).
`density="gram"` uses the exact Gram-determinant density instead (as M-flow; eq. 16).

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from .base import ModelConfig
from .split_flow import SplitFlowModel


@dataclasses.dataclass
class DNFConfig(ModelConfig):
    """noise_std: σ of the inflation noise (σ² = 0.01 in the thin-spiral experiment); penalty: λ;
    density: "deflate" (the paper's eq. 8 rule) or "gram" (exact density on the learned manifold)."""

    noise_std: float = 0.1
    penalty: float = 1.0
    density: str = "deflate"

    def validate(self) -> None:
        super().validate()
        if self.noise_std <= 0 or self.penalty < 0:
            raise ValueError(f"DNFConfig: need noise_std > 0 and penalty >= 0, got {self.noise_std}, {self.penalty}")
        self.check_choice("density", ("deflate", "gram"))


class DNF(SplitFlowModel):
    config_class = DNFConfig
    name = "dnf"

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        sigma = self.config.noise_std
        x_noisy = x + sigma * torch.randn_like(x)
        log_q, u, _ = self.full_log_prob(x_noisy, sigma)
        reconstruction = (x - self.reconstruct(u)).square().sum(-1)
        nll = -log_q.mean()
        penalty = reconstruction.mean()
        return nll + self.config.penalty * penalty, {"nll": nll.detach(), "reconstruction": penalty.detach()}

    def deflated_log_prob(self, x: Tensor) -> Tensor:
        """log q(x) - log q_σ(x|x), -inf where ‖v(x)‖ > σ/3 (paper 000 section 5.1)."""
        sigma = self.config.noise_std
        log_q, _, v = self.full_log_prob(x, sigma)
        off = self.config.features - self.config.manifold_dim
        log_normaliser = -0.5 * off * math.log(2 * math.pi * sigma**2)
        return torch.where(v.norm(dim=-1) > sigma / 3, torch.full_like(log_q, -math.inf), log_q - log_normaliser)

    def log_prob(self, x: Tensor) -> Tensor:
        if self.config.density == "gram":
            return self.gram_log_prob(x)
        return self.deflated_log_prob(x)
