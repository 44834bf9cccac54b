"""Elementwise (unconditional) rational-quadratic spline: each feature has its own learned monotone
spline, the same for every sample. It is the flow on a 1-D latent (d = 1, e.g. DNF's h on the thin
spiral) where a coupling layer has nothing to condition on.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import ops
from .base import Transform


class ElementwiseRQSpline(Transform):
    """Per-feature spline with linear tails outside [-tail_bound, tail_bound]; starts near the identity
    (zero logits give equal bins and unit slopes up to the softplus offset)."""

    def __init__(self, features: int, num_bins: int = 8, tail_bound: float = 3.0):
        super().__init__()
        self.features, self.num_bins, self.tail_bound = features, num_bins, float(tail_bound)
        self.widths = nn.Parameter(torch.zeros(features, num_bins))
        self.heights = nn.Parameter(torch.zeros(features, num_bins))
        self.derivatives = nn.Parameter(torch.zeros(features, num_bins - 1))

    def _spline(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"ElementwiseRQSpline: expected inputs (B, {self.features}), got {tuple(x.shape)}")
        y, logabsdet = ops.rq_spline(x, self.widths, self.heights, self.derivatives, inverse=inverse,
                                     tails="linear", tail_bound=self.tail_bound)
        return y, logabsdet.sum(-1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._spline(x, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._spline(z, inverse=True)
