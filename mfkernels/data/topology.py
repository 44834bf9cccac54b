"""Toy manifolds with non-trivial topology (paper 004's toy figure), generated in code, each with its
intrinsic dimension and a distance to the true manifold (to score samples):

- `Circle2D`: the unit circle in R² (dimension 1; not diffeomorphic to R, so one injective flow from a
  line cannot cover it);
- `TwoCircles`: two disjoint unit circles in R³, in perpendicular planes (dimension 1, two components);
- `TorusKnot`: the (p, q) torus knot on a torus of radii (R, r) in R³ (dimension 1; trefoil by default);
- `HolySphere`: the unit sphere in R³ with six polar caps (around ±x, ±y, ±z) removed (dimension 2).

The 1-D sets have `curve_parameter(x)`: the natural parameter of x's nearest point on the curve (the
second circle's angles follow the first's, shifted by 2π), so samples and data compare along the curve.
Points are uniform in the natural parameter (angle; area for the sphere), optionally with isotropic
Gaussian noise of std `noise` (the default 0 puts them exactly on the manifold).

References:
    | Chart flows (a poster)
    | docs/papers.md, paper 004
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor


class ToyManifold(abc.ABC):
    ambient_dim: int
    manifold_dim: int
    reference_points = 20_000  # dense points for the nearest-neighbour distance of curved sets

    def __init__(self, noise: float = 0.0):
        if noise < 0:
            raise ValueError(f"{type(self).__name__}: 'noise' must be >= 0, got {noise}")
        self.noise = noise

    @abc.abstractmethod
    def points(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(n, ambient_dim) float64 points exactly on the manifold."""

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
        x = self.points(n, generator)
        if self.noise:
            x = x + self.noise * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x.to(dtype)

    def distance(self, x: Tensor) -> Tensor:
        """(n,) Euclidean distance of each row of x to the manifold (nearest of a dense reference set
        unless a subclass knows the closed form)."""
        reference = self.points(self.reference_points, torch.Generator().manual_seed(12345))
        x = x.detach().double().cpu()
        return torch.cat([torch.cdist(chunk, reference).min(1).values for chunk in x.split(2048)])


class Circle2D(ToyManifold):
    ambient_dim, manifold_dim = 2, 1

    def points(self, n, generator=None):
        theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.stack([theta.cos(), theta.sin()], 1)

    def distance(self, x):
        return (x.detach().double().norm(dim=1) - 1).abs()

    def curve_parameter(self, x):
        x = x.detach().double()
        return torch.atan2(x[:, 1], x[:, 0]) % (2 * math.pi)


def _circle_distance(x: Tensor, center: Tensor, normal: Tensor, radius: float) -> Tensor:
    q = x - center
    height = q @ normal
    in_plane = (q - height[:, None] * normal).norm(dim=1)
    return torch.sqrt(height**2 + (in_plane - radius) ** 2)


class TwoCircles(ToyManifold):
    """Unit circles centred at (∓1.5, 0, 0), the first in the xy-plane, the second in the xz-plane."""

    ambient_dim, manifold_dim = 3, 1
    centers = ((-1.5, 0.0, 0.0), (1.5, 0.0, 0.0))
    normals = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0))

    def points(self, n, generator=None):
        theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        which = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
        c, s = theta.cos(), theta.sin()
        zero = torch.zeros_like(c)
        first = torch.stack([c - 1.5, s, zero], 1)
        second = torch.stack([c + 1.5, zero, s], 1)
        return torch.where(which[:, None], first, second)

    def distance(self, x):
        x = x.detach().double()
        return torch.minimum(*(_circle_distance(x, torch.tensor(c, dtype=x.dtype), torch.tensor(m, dtype=x.dtype), 1.0)
                               for c, m in zip(self.centers, self.normals)))

    def curve_parameter(self, x):
        x = x.detach().double()
        first = _circle_distance(x, torch.tensor(self.centers[0], dtype=x.dtype),
                                 torch.tensor(self.normals[0], dtype=x.dtype), 1.0)
        second = _circle_distance(x, torch.tensor(self.centers[1], dtype=x.dtype),
                                  torch.tensor(self.normals[1], dtype=x.dtype), 1.0)
        angle_first = torch.atan2(x[:, 1], x[:, 0] + 1.5) % (2 * math.pi)
        angle_second = torch.atan2(x[:, 2], x[:, 0] - 1.5) % (2 * math.pi) + 2 * math.pi
        return torch.where(first <= second, angle_first, angle_second)


class TorusKnot(ToyManifold):
    ambient_dim, manifold_dim = 3, 1

    def __init__(self, p: int = 2, q: int = 3, R: float = 1.0, r: float = 0.4, noise: float = 0.0):
        super().__init__(noise)
        if math.gcd(p, q) != 1 or not R > r > 0:
            raise ValueError(f"TorusKnot: need coprime p, q and R > r > 0, got p={p}, q={q}, R={R}, r={r}")
        self.p, self.q, self.R, self.r = p, q, R, r

    def points(self, n, generator=None):
        return self.embed(2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64))

    def embed(self, phi: Tensor) -> Tensor:
        radius = self.R + self.r * torch.cos(self.q * phi)
        return torch.stack([radius * torch.cos(self.p * phi), radius * torch.sin(self.p * phi),
                            self.r * torch.sin(self.q * phi)], 1)

    def curve_parameter(self, x):
        phi = torch.linspace(0, 2 * math.pi, self.reference_points + 1, dtype=torch.float64)[:-1]
        curve = self.embed(phi)
        index = [torch.cdist(chunk, curve).argmin(1) for chunk in x.detach().double().cpu().split(2048)]
        return phi[torch.cat(index)] if index else phi[:0]


class HolySphere(ToyManifold):
    """Unit sphere minus the six caps of angular radius `hole` around ±x, ±y, ±z."""

    ambient_dim, manifold_dim = 3, 2

    def __init__(self, hole: float = 0.4, noise: float = 0.0):
        super().__init__(noise)
        if not 0 < hole < math.pi / 4:
            raise ValueError(f"HolySphere: 'hole' must be in (0, π/4), got {hole}")
        self.hole = hole

    def points(self, n, generator=None):
        chunks, have = [], 0
        while have < n:  # uniform on the sphere, rejecting the caps (about 70 % are kept)
            v = torch.randn(2 * n, 3, generator=generator, dtype=torch.float64)
            v = v / v.norm(dim=1, keepdim=True)
            v = v[v.abs().max(1).values < math.cos(self.hole)]
            chunks.append(v)
            have += len(v)
        return torch.cat(chunks)[:n]

    def distance(self, x):
        """Closed form: to the sphere where the direction of x is outside the caps, else to the rim of
        the cap it points into (the caps are disjoint for hole < π/4)."""
        x = x.detach().double()
        r = x.norm(dim=1)
        out = (r - 1).abs()
        axes = torch.cat([torch.eye(3, dtype=x.dtype), -torch.eye(3, dtype=x.dtype)])
        cosines = (x / r.clamp_min(1e-300)[:, None]) @ axes.T  # (n, 6)
        best, which = cosines.max(1)
        inside = best > math.cos(self.hole)
        for a in range(6):
            rows = inside & (which == a)
            if rows.any():
                out[rows] = _circle_distance(x[rows], math.cos(self.hole) * axes[a], axes[a], math.sin(self.hole))
        return out


TOPOLOGY_SETS = {"circle": Circle2D, "two_circles": TwoCircles, "torus_knot": TorusKnot, "holy_sphere": HolySphere}
