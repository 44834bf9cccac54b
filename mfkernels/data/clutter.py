"""A "shapes with clutter" image set (for paper 002's pixel rejection), generated in code: a bright
square at a continuous position on a dark size × size canvas (a clean 2-D manifold: the square's
pixels are its exact overlap with each pixel, so the image moves smoothly with the position), plus
salt-and-pepper distractors: each pixel is flipped (dark → 1, bright → 0) with probability `clutter`.
The on-/off-manifold split is known per pixel, so how many distractors a model's projection removes
can be measured (`removed_fraction`, `moved_halfway_fraction`), and how far any image is from the clean
manifold (`manifold_mse`) and where on it (`nearest_clean`).

References:
    | Joint Manifold Learning and Density Estimation Using Normalizing Flows (Razavi et al., 2022)
    | https://arxiv.org/abs/2206.03293
"""

from __future__ import annotations

import torch
from torch import Tensor


class SquareWithClutter:
    manifold_dim = 2

    def __init__(self, size: int = 16, square: int = 5, clutter: float = 0.05):
        if not 1 <= square < size or not 0 <= clutter < 1:
            raise ValueError(f"SquareWithClutter: need 1 <= square < size and 0 <= clutter < 1, got size={size}, "
                             f"square={square}, clutter={clutter}")
        self.size, self.square, self.clutter = size, square, clutter
        self.ambient_dim = size * size

    def render(self, position: Tensor) -> Tensor:
        """Clean images (n, size²) of squares with top-left corners `position` (n, 2) in [0, size - square]."""
        pixels = torch.arange(self.size, dtype=position.dtype)
        lo, hi = position[:, :, None], position[:, :, None] + self.square
        overlap = (torch.minimum(pixels + 1, hi) - torch.maximum(pixels, lo)).clamp(0, 1)  # (n, 2, size)
        return (overlap[:, 0, :, None] * overlap[:, 1, None, :]).flatten(1)

    def sample_with_truth(self, n: int, generator: torch.Generator | None = None,
                          dtype=torch.float32) -> tuple[Tensor, Tensor, Tensor]:
        """(cluttered images, clean images, distractor mask (bool)), each (n, size²)."""
        position = (self.size - self.square) * torch.rand(n, 2, generator=generator, dtype=torch.float64)
        clean = self.render(position)
        mask = torch.rand(clean.shape, generator=generator, dtype=torch.float64) < self.clutter
        x = torch.where(mask, (clean < 0.5).double(), clean)
        return x.to(dtype), clean.to(dtype), mask

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
        x, clean, _ = self.sample_with_truth(n, generator, dtype)
        return x, clean

    def manifold_mse(self, x: Tensor, grid: int = 45) -> Tensor:
        """(n,) per image, the mean squared distance to the nearest clean image, searched over a grid of
        grid × grid square positions (spacing (size − square)/(grid − 1), 0.25 px by default): how far a
        sample or projection is from the clean manifold."""
        return self.nearest_clean(x, grid)[0]

    def nearest_clean(self, x: Tensor, grid: int = 45) -> tuple[Tensor, Tensor]:
        """(manifold_mse (n,), position (n, 2) in pixels of the nearest clean image on the grid): where on
        the 2-D manifold of square positions an image lies, to measure how samples cover it."""
        side = torch.linspace(0, self.size - self.square, grid, dtype=torch.float64)
        positions = torch.cartesian_prod(side, side)
        clean = self.render(positions)  # (grid², size²)
        x = x.detach().double().cpu()
        distances = (x.square().sum(1, keepdim=True) - 2 * x @ clean.T + clean.square().sum(1)) / self.ambient_dim
        best, index = distances.min(1)
        return best.clamp_min(0), positions[index]

    @staticmethod
    def removed_fraction(projected: Tensor, clean: Tensor, mask: Tensor, tolerance: float = 0.1) -> float:
        """Fraction of distractor pixels the projection restored: within `tolerance` of the clean value.
        Absolute on purpose: an MSE fit is pulled towards the distractors by about the clutter rate
        everywhere (the conditional mean), a Huber fit much less (a robust location estimate), and a
        relative criterion ("moved halfway back", `moved_halfway_fraction`) cannot tell the two apart
        until the clutter is dense."""
        return float(((projected - clean).abs()[mask] <= tolerance).double().mean()) if mask.any() else float("nan")

    @staticmethod
    def moved_halfway_fraction(x: Tensor, projected: Tensor, clean: Tensor, mask: Tensor) -> float:
        """Fraction of distractor pixels the projection moved at least halfway back to the clean value."""
        before = (x - clean).abs()[mask]
        after = (projected - clean).abs()[mask]
        return float((after <= 0.5 * before).double().mean()) if before.numel() else float("nan")
