"""M-flow (Brehmer & Cranmer; the baseline of paper 000, eq. 16): the generator g = f⁻¹∘Pad∘h⁻¹ is
learned in a manifold phase (reconstruction ‖x - f⁻¹(Pad(Proj_u f(x)))‖², trains f only) and the
density on it in a density phase (maximum likelihood of u = Proj_u f(x) under h, trains h only).
Evaluation uses the exact Gram-determinant density p(x) = p(u') det(JᵀJ)^(-1/2).

Schedules: "alternate" (M/D: the phase flips every `phase_steps` steps), "sequential" (manifold phase
for `manifold_steps` steps, then the density phase, as in paper 000's figure 2) and "joint" (both
losses every step; the gradients do not mix since u is detached for the density term).

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
    | Flows for simultaneous manifold learning and density estimation (Brehmer and Cranmer, 2020)
    | https://arxiv.org/abs/2003.13913
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from ..flows import standard_normal_log_prob
from .base import ModelConfig
from .split_flow import SplitFlowModel


@dataclasses.dataclass
class MFlowConfig(ModelConfig):
    schedule: str = "alternate"
    phase_steps: int = 100
    manifold_steps: int = 1000

    def validate(self) -> None:
        super().validate()
        self.check_choice("schedule", ("alternate", "sequential", "joint"))
        if self.phase_steps < 1 or self.manifold_steps < 0:
            raise ValueError(f"MFlowConfig: need phase_steps >= 1 and manifold_steps >= 0, got "
                             f"{self.phase_steps}, {self.manifold_steps}")


class MFlow(SplitFlowModel):
    config_class = MFlowConfig
    name = "mflow"

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.phase = "joint" if self.config.schedule == "joint" else "manifold"

    def begin_step(self, step: int) -> None:
        c = self.config
        if c.schedule == "alternate":
            self.phase = "manifold" if (step // c.phase_steps) % 2 == 0 else "density"
        elif c.schedule == "sequential":
            self.phase = "manifold" if step < c.manifold_steps else "density"

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        u, _, _ = self.split(x)
        total = x.new_zeros(())
        terms: dict[str, Tensor] = {}
        if self.phase in ("manifold", "joint"):
            reconstruction = (x - self.reconstruct(u)).square().sum(-1).mean()
            total = total + reconstruction
            terms["reconstruction"] = reconstruction.detach()
        if self.phase in ("density", "joint"):
            u_prime, logdet_h = self.inner(u.detach())
            nll = -(standard_normal_log_prob(u_prime) + logdet_h).mean()
            total = total + nll
            terms["nll"] = nll.detach()
        return total, terms

    def log_prob(self, x: Tensor) -> Tensor:
        return self.gram_log_prob(x)
