"""Pseudo-invertible encoder (Beitler et al.; the PIE baseline of papers 000 and M-flow): the split
flow trained by maximum likelihood alone, with a narrow Gaussian N(0, ε²I) on the off-manifold
coordinates v. It is a DNF with λ = σ = 0 (paper 000, section 4): nothing makes u encode the manifold.

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from .base import ModelConfig
from .split_flow import SplitFlowModel


@dataclasses.dataclass
class PIEConfig(ModelConfig):
    """off_manifold_std: ε of the base on v; density: "gram" (exact density on the learned manifold,
    at the projection of x) or "full" (the D-dimensional density of the flow)."""

    off_manifold_std: float = 0.01
    density: str = "gram"

    def validate(self) -> None:
        super().validate()
        if self.off_manifold_std <= 0:
            raise ValueError(f"PIEConfig: 'off_manifold_std' must be > 0, got {self.off_manifold_std}")
        self.check_choice("density", ("gram", "full"))


class PIE(SplitFlowModel):
    config_class = PIEConfig
    name = "pie"

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        log_q, _, _ = self.full_log_prob(x, self.config.off_manifold_std)
        nll = -log_q.mean()
        return nll, {"nll": nll.detach()}

    def log_prob(self, x: Tensor) -> Tensor:
        if self.config.density == "full":
            return self.full_log_prob(x, self.config.off_manifold_std)[0]
        return self.gram_log_prob(x)
