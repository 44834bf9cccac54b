"""The spread-flow paper's data (paper 003, section 5 and appendix C.1), generated in code and seeded,
each with its true intrinsic dimension and a distance to its true manifold:

- `Sine`: x1 ~ N(0, 1), x2 = sin(2 x1) (dimension 1 in R^2);
- `Line`: x1 ~ N(0, 1), x2 = x1 (dimension 1 in R^2);
- `SCurve`: scikit-learn's S-curve, t ~ U(-3π/2, 3π/2), (sin t, 2·U(0, 1), sign(t)(cos t - 1)) (dimension 2 in R^3);
- `FadingSquare`: 32 × 32 black images with a 6 × 6 grey square whose grey level is U(0, 1) (dimension 1 in
  R^1024, Rubenstein et al. 2018), flattened to vectors.

Every set has `sample(n, generator) -> (x, latent)`, `intrinsic_dim`, `ambient_dim` and `distance(x)`;
the 1-D sets also `curve_parameter(x)`, the position along the curve of x's nearest point on it (x1
for sine and line, the grey level for the fading square), to compare where samples lie along it.

References:
    | Spread Flows for Manifold Modelling (Zhang et al., 2021)
    | https://arxiv.org/abs/2109.14216
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _nearest_on_curve(x: Tensor, curve: Tensor) -> Tensor:
    nearest = [torch.cdist(chunk, curve).min(dim=1).values for chunk in x.double().split(256)]
    return (torch.cat(nearest) if nearest else x.new_zeros(0, dtype=torch.float64)).to(x.dtype)


class Sine:
    intrinsic_dim, ambient_dim = 1, 2
    manifold_dim = intrinsic_dim  # the name the CLI's `train` reads

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
        x1 = torch.randn(n, generator=generator, dtype=torch.float64)
        return torch.stack([x1, torch.sin(2 * x1)], 1).to(dtype), x1[:, None].to(dtype)

    def distance(self, x: Tensor) -> Tensor:
        t = torch.linspace(-6, 6, 60001, dtype=torch.float64)
        return _nearest_on_curve(x, torch.stack([t, torch.sin(2 * t)], 1))

    def curve_parameter(self, x: Tensor) -> Tensor:
        t = torch.linspace(-6, 6, 60001, dtype=torch.float64)
        curve = torch.stack([t, torch.sin(2 * t)], 1)
        index = [torch.cdist(chunk, curve).argmin(dim=1) for chunk in x.detach().double().cpu().split(256)]
        return t[torch.cat(index)] if index else t[:0]


class Line:
    intrinsic_dim, ambient_dim = 1, 2
    manifold_dim = intrinsic_dim  # the name the CLI's `train` reads

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
        x1 = torch.randn(n, generator=generator, dtype=torch.float64)
        return torch.stack([x1, x1], 1).to(dtype), x1[:, None].to(dtype)

    def distance(self, x: Tensor) -> Tensor:
        return (x[:, 1] - x[:, 0]).abs() / math.sqrt(2)

    def curve_parameter(self, x: Tensor) -> Tensor:
        return (x[:, 0].double() + x[:, 1].double()) / 2  # the foot of the perpendicular on x2 = x1


class SCurve:
    intrinsic_dim, ambient_dim = 2, 3
    manifold_dim = intrinsic_dim

    @staticmethod
    def embed(t: Tensor, y: Tensor) -> Tensor:
        return torch.stack([torch.sin(t), y, torch.sign(t) * (torch.cos(t) - 1)], -1)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
        t = 3 * math.pi * (torch.rand(n, generator=generator, dtype=torch.float64) - 0.5)
        y = 2 * torch.rand(n, generator=generator, dtype=torch.float64)
        return self.embed(t, y).to(dtype), torch.stack([t, y], 1).to(dtype)

    def distance(self, x: Tensor) -> Tensor:
        """Distance to the surface: the (x1, x3) cross-section is a curve; y is free within [0, 2]."""
        t = torch.linspace(-1.5 * math.pi, 1.5 * math.pi, 30001, dtype=torch.float64)
        section = self.embed(t, torch.zeros_like(t))[:, [0, 2]]
        in_plane = _nearest_on_curve(x[:, [0, 2]], section).double()
        outside = (x[:, 1].double() - x[:, 1].double().clamp(0, 2)).abs()
        return torch.sqrt(in_plane.square() + outside.square()).to(x.dtype)


class FadingSquare:
    intrinsic_dim = manifold_dim = 1

    def __init__(self, size: int = 32, square: int = 6):
        self.size, self.square = size, square
        mask = torch.zeros(size, size, dtype=torch.float64)
        start = (size - square) // 2
        mask[start:start + square, start:start + square] = 1
        self.mask = mask.flatten()
        self.ambient_dim = size * size

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
        level = torch.rand(n, generator=generator, dtype=torch.float64)
        return (level[:, None] * self.mask).to(dtype), level[:, None].to(dtype)

    def distance(self, x: Tensor) -> Tensor:
        m = self.mask.to(x.device)
        level = ((x.double() @ m) / m.sum()).clamp(0, 1)
        return (x.double() - level[:, None] * m).norm(dim=1).to(x.dtype)

    def curve_parameter(self, x: Tensor) -> Tensor:
        m = self.mask.to(x.device)
        return ((x.double() @ m) / m.sum()).clamp(0, 1).cpu()


SPREAD_DATASETS = {"sine": Sine, "line": Line, "s_curve": SCurve, "fading_square": FadingSquare}
