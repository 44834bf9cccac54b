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

Conditioner reuse (`manifold_coupling=True`): the reconstruction f⁻¹(u, 0) feeds every layer other
inputs than the forward pass did (v is replaced by 0), so a coupling's conditioner output can be reused
only where its identity part is unchanged, which holds for exactly one layer: a last coupling whose
identity part is u itself (it transforms v conditioned on u). With this option f ends in such a layer
and the loss inverts it with the conditioner output of the forward pass; every other layer must run
its conditioner again on the new inputs.

References:
    | Joint Manifold Learning and Density Estimation Using Normalizing Flows (Razavi et al., 2022)
    | https://arxiv.org/abs/2206.03293
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ..flows import RQSplineCoupling
from .base import ModelConfig, seeded
from .penalties import penalty
from .split_flow import SplitFlowModel


@dataclasses.dataclass
class PixelRejectionConfig(ModelConfig):
    """delta: the Huber threshold δ; penalty_weight: λ; penalty: "huber" | "mse"; inner_layers = 0 is
    PR-D's single block."""

    delta: float = 0.5
    penalty_weight: float = 1.0
    penalty: str = "huber"
    manifold_coupling: bool = False  # end f in a coupling v -> v' given u, whose conditioner the loss reuses

    def validate(self) -> None:
        super().validate()
        self.check_choice("penalty", ("huber", "mse"))
        if not self.delta > 0 or self.penalty_weight < 0:
            raise ValueError(f"PixelRejectionConfig: need delta > 0 and penalty_weight >= 0, got {self.delta}, "
                             f"{self.penalty_weight}")


def _flow_features(flow: nn.Module) -> int | None:
    """D of a user's flow, where it says (a `features` attribute, or the first vector layer's event shape)."""
    for module in flow.modules():
        if isinstance(getattr(module, "features", None), int):
            return module.features
        shape = getattr(module, "event_shape", None)
        if shape is not None and len(shape) == 1:
            return int(shape[0])
    return None


class PixelRejection(SplitFlowModel):
    """`PixelRejection(features=D, manifold_dim=d, delta=δ, penalty_weight=λ, penalty=...)` builds the
    flows from the config (spline stack or `backbone="glow"`); `flow=` (any D → D `flows.Transform`) and
    `density_flow=` (d → d; the PR-H / PR-M second block) replace them with your own; a checkpoint of
    such a model loads into a model built the same way. The paper's form works too:
    `PixelRejection(flow, d, delta, lam=1.0, penalty="huber", density_flow=None)` (D read from the flow,
    or pass `features=`)."""

    config_class = PixelRejectionConfig
    name = "pr"

    def __init__(self, config: PixelRejectionConfig | nn.Module | None = None, d: int | None = None,
                 delta: float | None = None, lam: float | None = None, *, flow: nn.Module | None = None,
                 density_flow: nn.Module | None = None, **options):
        if isinstance(config, nn.Module):  # PixelRejection(flow, d, delta, lam=..., ...)
            if flow is not None:
                raise TypeError("PixelRejection: the flow was given twice (positionally and as flow=)")
            flow, config = config, None
            if "features" not in options:
                features = _flow_features(flow)
                if features is None:
                    raise ValueError("PixelRejection: cannot read D from the given flow; pass features=D")
                options["features"] = features
        for key, value in (("manifold_dim", d), ("delta", delta), ("penalty_weight", lam)):
            if value is not None:
                options[key] = value
        super().__init__(config, **options)
        if flow is not None:
            self.outer = flow
        if density_flow is not None:
            self.inner = density_flow
        c = self.config
        self.tail = None
        if c.manifold_coupling:
            if c.manifold_dim >= c.features:
                raise ValueError("PixelRejection: manifold_coupling needs manifold_dim < features (it transforms v)")
            with seeded(c.seed + 2000):
                self.tail = RQSplineCoupling(
                    c.features,
                    c.num_bins,
                    c.tail_bound,
                    mask=torch.arange(c.features) < c.manifold_dim,
                    hidden_features=c.hidden_features,
                )

    def _split_with_params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """(u, v, log|det ∂f/∂x|, the last coupling's conditioner output or None)."""
        if self.tail is None:
            return (*super().split(x), None)
        self._check_input(x)
        z, logabsdet = self.outer(x)
        z, tail_logabsdet, params = self.tail.forward_with_params(z)
        d = self.config.manifold_dim
        return z[:, :d], z[:, d:], logabsdet + tail_logabsdet, params

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self._split_with_params(x)[:3]

    def reconstruct(self, u: Tensor, tail_params: Tensor | None = None) -> Tensor:
        """f⁻¹(u, 0); `tail_params`: the last coupling's conditioner output for this u, if known."""
        z = self.pad(u)
        if self.tail is not None:
            z = (self.tail.inverse(z) if tail_params is None else self.tail.inverse_with_params(z, tail_params))[0]
        return self.outer.inverse(z)[0]

    def log_prob(self, x: Tensor) -> Tensor:
        return self.full_log_prob(x, 1.0)[0]

    def rejection_penalty(self, x: Tensor, u: Tensor, tail_params: Tensor | None = None) -> Tensor:
        """(B,) eq 4: the mean per-pixel penalty between x and its reconstruction f⁻¹(u, 0)."""
        c = self.config
        return penalty(c.penalty, x, self.reconstruct(u, tail_params), c.delta)

    def loss(self, x: Tensor, reuse_conditioner: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        u, v, logdet_f, tail_params = self._split_with_params(x)
        log_p = self.density_from_split(u, v, logdet_f, 1.0)
        rejection = self.rejection_penalty(x, u, tail_params if reuse_conditioner else None)
        nll, pen = -log_p.mean(), rejection.mean()
        return nll + self.config.penalty_weight * pen, {"nll": nll.detach(), "penalty": pen.detach()}
