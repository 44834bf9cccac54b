"""Data on known manifolds, generated in code and seeded, each with its exact density on the manifold.

- `ThinSpiral` (paper 000, section 5.1): u ~ Exp(scale 0.3), x = g(u) = α√u/3 · (cos α√u, sin α√u),
  a 1-D manifold in R^2. The paper's text says α = 4π/3; the authors' experiment code uses 3π (the
  ~1.5-turn spiral of their figure 2), which is our default. Its density on the manifold is taken
  with respect to arc length: p(x) = p_u(u) / |g'(u)|.
- `VonMisesCircle` (DNF supplementary): angle ~ von Mises(μ, κ) on the unit circle in R^2; density
  w.r.t. arc length p(θ) = exp(κ cos(θ − μ)) / (2π I0(κ)).
- `VonMisesFisherMixture` (DNF supplementary): a mixture of von Mises-Fisher distributions on the unit
  sphere S^2 in R^3; density w.r.t. surface area Σ_k w_k κ_k / (4π sinh κ_k) exp(κ_k μ_kᵀx).

Every data set has `sample(n, generator) -> (x, u)` (u: intrinsic coordinates), `log_prob(x)`
(the exact manifold density of points on the manifold), `manifold_dim` and `ambient_dim`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .clutter import SquareWithClutter
from .spread import SPREAD_DATASETS
from .topology import TOPOLOGY_SETS


class ThinSpiral:
    """The thin spiral of the DNF paper; `alpha` sets the winding (default 3π, see the module doc)."""

    manifold_dim, ambient_dim = 1, 2

    def __init__(self, alpha: float = 3 * math.pi, scale: float = 0.3):
        if alpha <= 0 or scale <= 0:
            raise ValueError(f"ThinSpiral: 'alpha' and 'scale' must be positive, got {alpha} and {scale}")
        self.alpha, self.scale = float(alpha), float(scale)

    def embed(self, u: Tensor) -> Tensor:
        """g(u): (n,) latent values >= 0 -> (n, 2) points on the spiral."""
        angle = self.alpha * u.clamp_min(0).sqrt()
        return torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1) * (angle / 3).unsqueeze(-1)

    def speed(self, u: Tensor) -> Tensor:
        """|g'(u)| = (α/6) sqrt(1/u + α²): arc length per unit of u."""
        return self.alpha / 6 * torch.sqrt(1 / u + self.alpha**2)

    def latent_log_prob(self, u: Tensor) -> Tensor:
        return torch.where(u >= 0, -u / self.scale - math.log(self.scale), torch.full_like(u, -math.inf))

    def latent_of(self, x: Tensor) -> Tensor:
        """The u of points on the spiral (its radius is α√u/3, which increases monotonically)."""
        radius = x.norm(dim=-1)
        return (3 * radius / self.alpha).square()

    def curve_parameter(self, x: Tensor) -> Tensor:
        """Position along the spiral (u) of the spiral point at x's radius, for comparing samples."""
        return self.latent_of(x.detach().double())

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        u = torch.empty(n, dtype=torch.float64).exponential_(1 / self.scale, generator=generator)
        return self.embed(u).to(dtype), u.to(dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log density w.r.t. arc length of points on the spiral (off it: of their radius' point)."""
        u = self.latent_of(x.double())
        return (self.latent_log_prob(u) - torch.log(self.speed(u))).to(x.dtype)

    def quantile(self, q: float) -> float:
        return -self.scale * math.log1p(-q)

    def distance(self, x: Tensor, num: int = 50000, q_max: float = 0.9999) -> Tensor:
        """Euclidean distance of points x (n, 2) to the spiral: to the nearest of `num` points spaced
        evenly in angle up to the q_max quantile (so the resolution is < 1e-3 of its length)."""
        angle = torch.linspace(0, self.alpha * math.sqrt(self.quantile(q_max)), num, dtype=torch.float64)
        curve = self.embed((angle / self.alpha).square())
        nearest = [torch.cdist(chunk, curve).min(dim=1).values for chunk in x.double().split(256)]
        return (torch.cat(nearest) if nearest else x.new_zeros(0, dtype=torch.float64)).to(x.dtype)


class VonMisesCircle:
    """von Mises distribution of the angle on the unit circle embedded in R^2."""

    manifold_dim, ambient_dim = 1, 2

    def __init__(self, loc: float = 0.0, concentration: float = 2.0):
        self.distribution = torch.distributions.VonMises(torch.tensor(float(loc), dtype=torch.float64),
                                                         torch.tensor(float(concentration), dtype=torch.float64))

    def embed(self, angle: Tensor) -> Tensor:
        return torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        # torch's VonMises.sample takes no generator; inverse-CDF on a fine grid keeps the seed ours.
        grid = torch.linspace(-math.pi, math.pi, 20001, dtype=torch.float64)
        pdf = self.distribution.log_prob(grid).exp()
        cdf = torch.cat([grid.new_zeros(1), torch.cumsum((pdf[1:] + pdf[:-1]) / 2 * (grid[1] - grid[0]), 0)])
        cdf = cdf / cdf[-1]
        r = torch.rand(n, dtype=torch.float64, generator=generator)
        i = torch.searchsorted(cdf, r).clamp(1, len(grid) - 1)
        t = (r - cdf[i - 1]) / (cdf[i] - cdf[i - 1])
        angle = grid[i - 1] + t * (grid[i] - grid[i - 1])
        return self.embed(angle).to(dtype), angle.to(dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        angle = torch.atan2(x[..., 1].double(), x[..., 0].double())
        return self.distribution.log_prob(angle).to(x.dtype)


class VonMisesFisherMixture:
    """Mixture of von Mises-Fisher distributions on the unit sphere S^2 in R^3 (Wood's sampler)."""

    manifold_dim, ambient_dim = 2, 3

    def __init__(self, locs: Tensor | None = None, concentrations: Tensor | None = None,
                 weights: Tensor | None = None):
        if locs is None:
            locs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, -1.0, -1.0]])
        locs = torch.as_tensor(locs, dtype=torch.float64)
        self.locs = locs / locs.norm(dim=-1, keepdim=True)
        k = len(self.locs)
        self.concentrations = torch.as_tensor(concentrations if concentrations is not None else [6.0] * k,
                                              dtype=torch.float64)
        w = torch.as_tensor(weights if weights is not None else [1.0 / k] * k, dtype=torch.float64)
        self.weights = w / w.sum()

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        kappa = self.concentrations[comp]
        # w = cos(angle to the mean): exact inverse CDF of its density ∝ exp(κ w) on [-1, 1].
        r = torch.rand(n, dtype=torch.float64, generator=generator)
        w = 1 + torch.log(r + (1 - r) * torch.exp(-2 * kappa)) / kappa
        phi = 2 * math.pi * torch.rand(n, dtype=torch.float64, generator=generator)
        mu = self.locs[comp]
        # An orthonormal frame (e1, e2) perpendicular to each mean direction.
        helper = torch.where(mu[:, :1].abs() < 0.9, torch.tensor([1.0, 0, 0], dtype=torch.float64),
                             torch.tensor([0, 1.0, 0], dtype=torch.float64))
        e1 = torch.linalg.cross(mu, helper)
        e1 = e1 / e1.norm(dim=-1, keepdim=True)
        e2 = torch.linalg.cross(mu, e1)
        s = torch.sqrt((1 - w.square()).clamp_min(0))
        x = w[:, None] * mu + s[:, None] * (torch.cos(phi)[:, None] * e1 + torch.sin(phi)[:, None] * e2)
        polar = torch.stack([torch.acos(x[:, 2].clamp(-1, 1)), torch.atan2(x[:, 1], x[:, 0])], dim=-1)
        return x.to(dtype), polar.to(dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        k = self.concentrations
        # log(κ / (4π sinh κ)) written stably: sinh κ = e^κ (1 - e^{-2κ}) / 2.
        log_norm = torch.log(k) - math.log(2 * math.pi) - k - torch.log1p(-torch.exp(-2 * k))
        terms = torch.log(self.weights) + log_norm + k * (x.double() @ self.locs.mT)
        return torch.logsumexp(terms, dim=-1).to(x.dtype)


DATASETS = {"thin_spiral": ThinSpiral, "von_mises_circle": VonMisesCircle, "vmf_sphere": VonMisesFisherMixture,
            **SPREAD_DATASETS, **TOPOLOGY_SETS, "square_clutter": SquareWithClutter}


def make_dataset(name: str, **kwargs):
    """A data set by name: thin_spiral, von_mises_circle, vmf_sphere (exact densities), the spread-flow
    sets sine, line, s_curve, fading_square and the chart-flow sets circle, two_circles, torus_knot,
    holy_sphere (no density: a manifold and a distance to it), or square_clutter (paper 002's images).
    Every set's `sample(n, generator)` returns the points, or a tuple whose first entry they are
    (`sample_points` takes either)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(DATASETS)}")
    import inspect

    accepted = [p for p in inspect.signature(DATASETS[name]).parameters if p not in ("self", "args", "kwargs")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"data set {name!r}: unknown option(s) {unknown}; expected some of {accepted}")
    try:
        return DATASETS[name](**kwargs)
    except TypeError as exc:  # a value of the wrong type for an option
        raise ValueError(f"data set {name!r}: {exc}") from None


def sample_points(dataset, n: int, generator: torch.Generator | None = None) -> Tensor:
    """The (n, ambient_dim) points of any set in DATASETS (some also return latents or clean images)."""
    out = dataset.sample(n, generator)
    return out[0] if isinstance(out, tuple) else out
