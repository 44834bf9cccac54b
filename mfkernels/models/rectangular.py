"""Rectangular flow (Caterini, Loaiza-Ganem, Pleiss, Cunningham, "Rectangular Flows for Manifold
Learning", NeurIPS 2021, eqs. 5, 10-12): the split flow's generator g(u') = f⁻¹(Pad(h⁻¹(u'))) trained
by the manifold likelihood itself, the term M-flow (paper 000 section 4) leaves out of training:

    -log p(x) = -log N(u'; 0, I) - log|det ∂h/∂u| + ½ log det(JᵀJ) + β ‖x - f⁻¹(Pad(u))‖²

with u the first d coordinates of f(x), u' = h(u) and J = ∂f⁻¹(Pad(u))/∂u (D × d); the h-part of the
generator's Gram determinant is h's own log-determinant, so J only spans f. `logdet`:
    "exact"       ½ log det(JᵀJ) from the d fused tangents and a Cholesky (manifold.generator_log_volume),
                  differentiated exactly through the ops' second-order kernels;
    "stochastic"  its gradient by Hutchinson probes and conjugate gradients (manifold.stochastic_log_volume,
                  `probes`, `cg_tol`, `cg_max_iter`): the loss value then leaves the term out;
    "none"        no volume term (M-flow's manifold objective with the density fitted jointly).

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
    | Rectangular Flows for Manifold Learning (Caterini et al., 2021)
    | https://arxiv.org/abs/2106.01413
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from .. import manifold
from ..flows import standard_normal_log_prob
from .base import ModelConfig
from .split_flow import SplitFlowModel

LOGDET_MODES = ("exact", "stochastic", "none")


@dataclasses.dataclass
class RectangularFlowConfig(ModelConfig):
    """logdet: "exact", "stochastic" or "none"; beta: weight of the reconstruction term; probes,
    probe_distribution, cg_tol, cg_max_iter (0: d): the stochastic estimator's Hutchinson probes per point
    (rademacher or gaussian) and CG stopping rule."""

    logdet: str = "exact"
    beta: float = 1.0
    probes: int = 1
    probe_distribution: str = "rademacher"
    cg_tol: float = 1e-4
    cg_max_iter: int = 0

    def validate(self) -> None:
        super().validate()
        self.check_choice("logdet", LOGDET_MODES)
        self.check_choice("probe_distribution", ("rademacher", "gaussian"))
        if self.beta < 0 or self.probes < 1 or not self.cg_tol > 0 or self.cg_max_iter < 0:
            raise ValueError(f"RectangularFlowConfig: need beta >= 0, probes >= 1, cg_tol > 0 and cg_max_iter >= 0, "
                             f"got {self.beta}, {self.probes}, {self.cg_tol}, {self.cg_max_iter}")


class RectangularFlow(SplitFlowModel):
    config_class = RectangularFlowConfig
    name = "rectangular"

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        u, _, _ = self.split(x)
        u_prime, logdet_h = self.inner(u)
        nll = -(standard_normal_log_prob(u_prime) + logdet_h)
        terms: dict[str, Tensor] = {}
        if c.logdet == "exact":
            log_volume = manifold.generator_log_volume(self.reconstruct, u)
            nll = nll + log_volume
            terms["log_volume"] = log_volume.mean().detach()
        elif c.logdet == "stochastic":
            nll = nll + manifold.stochastic_log_volume(self.reconstruct, u, probes=c.probes,
                                                       distribution=c.probe_distribution, tol=c.cg_tol,
                                                       max_iter=c.cg_max_iter or None)
        reconstruction = (x - self.reconstruct(u)).square().sum(-1).mean()
        nll = nll.mean()
        terms["nll" if c.logdet == "exact" else "nll_without_log_volume"] = nll.detach()
        terms["reconstruction"] = reconstruction.detach()
        return nll + c.beta * reconstruction, terms

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact density on the learned manifold at the projection of x (the Gram density)."""
        return self.gram_log_prob(x)
