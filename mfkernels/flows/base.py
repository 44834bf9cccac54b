"""The flow-layer interface and its composition.

Every layer maps x -> z with `forward(x, context=None) -> (z, logabsdet)` and back with
`inverse(z, context=None) -> (x, logabsdet)`, both exact; logabsdet is log|det dz/dx| (or dx/dz for
the inverse), one value per sample. `context` is an optional conditioning vector (chart flows,
paper 004), ignored by layers that take none.

References:
    | Chart flows (a poster)
    | docs/papers.md, paper 004
"""

from __future__ import annotations

import abc

from torch import Tensor, nn


class Transform(nn.Module, metaclass=abc.ABCMeta):
    """Base class of invertible layers; subclasses define both directions."""

    @abc.abstractmethod
    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x -> (z, log|det dz/dx|)."""

    @abc.abstractmethod
    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z -> (x, log|det dx/dz|)."""


class Sequential(Transform):
    """Layers applied in order; inverse runs them backwards. Log-determinants add up."""

    def __init__(self, *layers: Transform):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, logabsdet = layer(x, context)
            total = total + logabsdet
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = z.new_zeros(z.shape[0])
        for layer in reversed(self.layers):
            z, logabsdet = layer.inverse(z, context)
            total = total + logabsdet
        return z, total
