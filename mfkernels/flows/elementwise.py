"""Elementwise rational-quadratic spline: each feature has its own learned monotone spline, the same
for every sample, or with `context_features > 0` shifted per sample by an MLP of the context (the chart
centre in chart flows, paper 004). It is the flow on a 1-D latent (d = 1, e.g. DNF's h on the thin
spiral) where a coupling layer has nothing to condition on.

References:
    | Chart flows (a poster)
    | docs/papers.md, paper 004
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import ops
from .base import Transform
from .conditioners import MLP


class ElementwiseRQSpline(Transform):
    """Per-feature spline with linear tails outside [-tail_bound, tail_bound]; starts near the identity
    (zero logits give equal bins and unit slopes up to the softplus offset)."""

    def __init__(self, features: int, num_bins: int = 8, tail_bound: float = 3.0, context_features: int = 0,
                 hidden_features: int = 64):
        super().__init__()
        self.features, self.num_bins, self.tail_bound = features, num_bins, float(tail_bound)
        self.widths = nn.Parameter(torch.zeros(features, num_bins))
        self.heights = nn.Parameter(torch.zeros(features, num_bins))
        self.derivatives = nn.Parameter(torch.zeros(features, num_bins - 1))
        # zero-initialised last layer: the context changes nothing until trained
        self.context_net = (MLP(0, features * (3 * num_bins - 1), hidden_features, context_features=context_features)
                            if context_features else None)

    def _params(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        w, h, d = self.widths, self.heights, self.derivatives
        if self.context_net is None:
            return w, h, d
        shift = self.context_net(x[:, :0], context).unflatten(1, (self.features, -1))
        K = self.num_bins
        return w + shift[..., :K], h + shift[..., K:2 * K], d + shift[..., 2 * K:]

    def _spline(self, x: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"ElementwiseRQSpline: expected inputs (B, {self.features}), got {tuple(x.shape)}")
        y, logabsdet = ops.rq_spline(x, *self._params(x, context), inverse=inverse, tails="linear",
                                     tail_bound=self.tail_bound)
        return y, logabsdet.sum(-1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._spline(x, context, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._spline(z, context, inverse=True)
