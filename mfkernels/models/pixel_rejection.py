"""Pixel rejection (Razavi et al., paper 002, section 3.1, algorithm 1): a full-dimensional flow
f: x → (u, v), u the first d coordinates, with a per-pixel Huber reconstruction penalty

    loss = −log p(x) + λ · (1/D) Σ_i H_δ(|x_i − x̂_i|),   x̂ = f⁻¹(u, 0)          (eqs 4-5)

where log p(x) = log N(h(u)) + log|det ∂h/∂u| + log N(v; 0, I) + log|det ∂f/∂x| is the flow's full
density. Pixels far from the manifold (|x_i − x̂_i| > δ) are penalised linearly: they are "rejected"
rather than dragged onto it. Variants (the paper's names):
- PR-D: one block (`inner_layers=0`, u ~ N(0, I)), Huber;
- PR-H / PR-M: a second, dimension-preserving flow h on u (`inner_layers > 0`), Huber / MSE penalty.
Sampling: u' ~ N(0, I) → u = h⁻¹(u') → x = f⁻¹(u, 0). log_prob is the full density (bits/dim in the
paper's tables); `manifold_log_prob(model, x)` gives the density on the learned manifold if wanted.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from ..penalties import penalty
from .base import ModelConfig
from .split_flow import SplitFlowModel


@dataclasses.dataclass
class PixelRejectionConfig(ModelConfig):
    """delta: the Huber threshold δ; penalty_weight: λ; penalty: "huber" | "mse"; inner_layers = 0 is
    PR-D's single block."""

    delta: float = 0.5
    penalty_weight: float = 1.0
    penalty: str = "huber"

    def validate(self) -> None:
        super().validate()
        self.check_choice("penalty", ("huber", "mse"))
        if not self.delta > 0 or self.penalty_weight < 0:
            raise ValueError(f"PixelRejectionConfig: need delta > 0 and penalty_weight >= 0, got {self.delta}, "
                             f"{self.penalty_weight}")


class PixelRejection(SplitFlowModel):
    """`PixelRejection(features=D, manifold_dim=d, delta=δ, penalty_weight=λ, penalty=...)` builds the
    flows from the config (spline stack or `backbone="glow"`); `flow=` (any D → D `flows.Transform`) and
    `density_flow=` (d → d; the PR-H / PR-M second block) replace them with your own; a checkpoint of
    such a model loads into a model built the same way."""

    config_class = PixelRejectionConfig
    name = "pr"

    def __init__(self, config: PixelRejectionConfig | None = None, *, flow: nn.Module | None = None,
                 density_flow: nn.Module | None = None, **options):
        super().__init__(config, **options)
        if flow is not None:
            self.outer = flow
        if density_flow is not None:
            self.inner = density_flow

    def log_prob(self, x: Tensor) -> Tensor:
        return self.full_log_prob(x, 1.0)[0]

    def rejection_penalty(self, x: Tensor, u: Tensor) -> Tensor:
        """(B,) eq 4: the mean per-pixel penalty between x and its reconstruction f⁻¹(u, 0)."""
        c = self.config
        return penalty(c.penalty, x, self.reconstruct(u), c.delta)

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        log_p, u, _ = self.full_log_prob(x, 1.0)
        rejection = self.rejection_penalty(x, u)
        nll, pen = -log_p.mean(), rejection.mean()
        return nll + self.config.penalty_weight * pen, {"nll": nll.detach(), "penalty": pen.detach()}
