"""The standard normalizing flow: the full-dimensional baseline of paper 000 (figure 2, top right).
On data on a manifold its Jacobian determinant degenerates; it is here to show that.

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from ..flows import standard_normal_log_prob
from .base import Model, ModelConfig


@dataclasses.dataclass
class StandardFlowConfig(ModelConfig):
    """`manifold_dim` is ignored: the latent is the whole of R^D."""

    def validate(self) -> None:
        if self.features < 1:
            raise ValueError(f"StandardFlowConfig: 'features' must be >= 1, got {self.features}")
        self.check_backbone()


class StandardFlow(Model):
    config_class = StandardFlowConfig
    name = "standard"

    def __init__(self, config: StandardFlowConfig | None = None, **options):
        super().__init__(config, **options)
        self.flow = self.config.build_flow()

    @property
    def latent_dim(self) -> int:
        return self.config.features

    def log_prob(self, x: Tensor) -> Tensor:
        self._check_input(x)
        z, logabsdet = self.flow(x)
        return standard_normal_log_prob(z) + logabsdet

    def encode(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self.flow(x)[0]

    def decode(self, u: Tensor) -> Tensor:
        self._check_latent(u)
        return self.flow.inverse(u)[0]

    def project(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return x  # a bijection of R^D: every point is on its "manifold"

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        nll = -self.log_prob(x).mean()
        return nll, {"nll": nll.detach()}
