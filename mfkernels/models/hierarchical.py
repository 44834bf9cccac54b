"""Hierarchical manifold flows (paper 002, section 3.2, algorithm 2): a cascade of pixel-rejection
blocks D → d₁ → d₂ → …, block m a flow f_m on the manifold coordinates u_{m−1} of the block before
(u₀ = x) that splits them into (u_m, v_m). The density multiplies the blocks' off-manifold parts and
Jacobians with a standard normal on the last u:

    log p(x) = Σ_m [log N(v_m; 0, I) + log|det ∂f_m/∂u_{m−1}|] + log N(u_K; 0, I),

each block penalised by its own reconstruction u_{m−1} ≈ f_m⁻¹(u_m, 0) (Huber or MSE per block).
Two regimes:
- `regime="end_to_end"` (EE-H, EE-M: hierarchy in structure): all blocks trained together on
  −log p(x) + λ Σ_m penalty_m;
- `regime="stagewise"` (H-HH, H-HM, H-MH, H-MM: hierarchy in training): block m trains alone for
  `stage_steps` steps as a single pixel-rejection block on the data projected by the frozen blocks
  before it (u_{m−1}), the others untouched.
Sampling: u_K ~ N(0, I), then back through every block with zeros for the v's.

References:
    | Joint Manifold Learning and Density Estimation Using Normalizing Flows (Razavi et al., 2022)
    | https://arxiv.org/abs/2206.03293
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from .base import Model, ModelConfig
from .pixel_rejection import PixelRejection
from .split_flow import gaussian_log_prob


@dataclasses.dataclass
class HierarchicalFlowConfig(ModelConfig):
    """stage_dims: d₁ > d₂ > … (manifold_dim is ignored: the last entry is the latent size);
    penalties / deltas: per block; regime: "end_to_end" | "stagewise"; stage_steps: steps per block
    in the stagewise regime; penalty_weight: λ."""

    stage_dims: list[int] = dataclasses.field(default_factory=lambda: [2, 1])
    penalties: list[str] = dataclasses.field(default_factory=lambda: ["huber", "huber"])
    deltas: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5])
    regime: str = "end_to_end"
    stage_steps: int = 1000
    penalty_weight: float = 1.0

    def validate(self) -> None:
        self.check_choice("regime", ("end_to_end", "stagewise"))
        self.check_backbone()
        dims = [self.features, *self.stage_dims]
        if not self.stage_dims or any(b >= a for a, b in zip(dims, dims[1:])) or dims[-1] < 1:
            raise ValueError(f"HierarchicalFlowConfig: need features > d1 > d2 > ... >= 1, got features="
                             f"{self.features}, stage_dims={self.stage_dims}")
        if len(self.penalties) != len(self.stage_dims) or len(self.deltas) != len(self.stage_dims):
            raise ValueError(f"HierarchicalFlowConfig: one penalty and one delta per block, got {len(self.penalties)} "
                             f"and {len(self.deltas)} for {len(self.stage_dims)} blocks")
        if self.stage_steps < 1:
            raise ValueError(f"HierarchicalFlowConfig: 'stage_steps' must be >= 1, got {self.stage_steps}")

    def block_config(self, m: int) -> dict:
        """Block m as a single pixel-rejection model (no flow on its u: the next block is that flow)."""
        return {"features": ([self.features, *self.stage_dims])[m], "manifold_dim": self.stage_dims[m],
                "inner_layers": 0, "num_layers": self.num_layers, "num_bins": self.num_bins,
                "tail_bound": self.tail_bound, "hidden_features": self.hidden_features, "seed": self.seed + 10 * m,
                "penalty": self.penalties[m], "delta": self.deltas[m], "penalty_weight": self.penalty_weight,
                # only the first block sees images; the later ones act on vectors u: after a Glow block
                # a RealNVP one (paper 002's hierarchical models), otherwise the same backbone
                **({"backbone": self.backbone, "image_shape": self.image_shape, "levels": self.levels} if m == 0 else
                   {"backbone": "realnvp" if self.backbone == "glow" else self.backbone})}


class HierarchicalFlow(Model):
    config_class = HierarchicalFlowConfig
    name = "hierarchical"

    def __init__(self, config: HierarchicalFlowConfig | None = None, **options):
        super().__init__(config, **options)
        c = self.config
        self.blocks = nn.ModuleList(PixelRejection(**c.block_config(m)) for m in range(len(c.stage_dims)))
        self.active = 0

    @property
    def latent_dim(self) -> int:
        return self.config.stage_dims[-1]

    def begin_step(self, step: int) -> None:
        if self.config.regime == "stagewise":
            self.active = min(step // self.config.stage_steps, len(self.blocks) - 1)

    def _descend(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Inputs of every block (u₀ = x, u₁, …, u_K) and Σ_m [log N(v_m) + log|det|]."""
        self._check_input(x)
        inputs, total = [x], x.new_zeros(x.shape[0])
        for block in self.blocks:
            u, v, logabsdet = block.split(inputs[-1])
            inputs.append(u)
            total = total + gaussian_log_prob(v, 1.0) + logabsdet
        return inputs, total

    def log_prob(self, x: Tensor) -> Tensor:
        inputs, total = self._descend(x)
        return total + gaussian_log_prob(inputs[-1], 1.0)

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if self.config.regime == "stagewise":
            return self._stage_loss(x)
        inputs, total = self._descend(x)
        nll = -(total + gaussian_log_prob(inputs[-1], 1.0)).mean()
        terms = {"nll": nll.detach()}
        loss = nll
        for m, block in enumerate(self.blocks):
            pen = block.rejection_penalty(inputs[m], inputs[m + 1]).mean()
            loss = loss + self.config.penalty_weight * pen
            terms[f"penalty_{m + 1}"] = pen.detach()
        return loss, terms

    def _stage_loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Algorithm 2: the active block on the data projected by the (frozen) blocks before it."""
        self._check_input(x)
        with torch.no_grad():
            for block in self.blocks[: self.active]:
                x = block.split(x)[0]
        loss, terms = self.blocks[self.active].loss(x)
        terms["stage"] = torch.tensor(float(self.active + 1))
        return loss, terms

    def encode(self, x: Tensor) -> Tensor:
        return self._descend(x)[0][-1]

    def decode(self, u: Tensor) -> Tensor:
        self._check_latent(u)
        for block in reversed(self.blocks):
            u = block.reconstruct(u)
        return u
