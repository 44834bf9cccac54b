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
`Embedded(set, D)` places any of them isometrically in a higher-dimensional R^D.

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
    | Joint Manifold Learning and Density Estimation Using Normalizing Flows (Razavi et al., 2022)
    | https://arxiv.org/abs/2206.03293
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
    """von Mises distribution of the angle on the unit circle embedded in R^2.

    As a curve (for metrics.density_along_curve and the sample metrics) it is parametrised by arc
    length u in [0, 2π) starting at the antipode of the mode: angle = loc - π + u, so the mode sits
    at u = π and the curve's two ends meet where the density is lowest."""

    manifold_dim, ambient_dim = 1, 2

    def __init__(self, loc: float = 0.0, concentration: float = 2.0):
        self.loc = float(loc)
        self.distribution = torch.distributions.VonMises(torch.tensor(self.loc, dtype=torch.float64),
                                                         torch.tensor(float(concentration), dtype=torch.float64))
        # CDF over u on a fine grid (trapezoids): inverse-CDF sampling with our generator (torch's
        # VonMises.sample takes none) and the quantiles
        self._u_grid = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)
        pdf = self.latent_log_prob(self._u_grid).exp()
        step = self._u_grid[1] - self._u_grid[0]
        cdf = torch.cat([pdf.new_zeros(1), torch.cumsum((pdf[1:] + pdf[:-1]) / 2 * step, 0)])
        self._cdf = cdf / cdf[-1]

    def embed(self, u: Tensor) -> Tensor:
        """(n,) arc-length positions u -> (n, 2) points."""
        angle = self.loc - math.pi + u
        return torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1)

    def speed(self, u: Tensor) -> Tensor:
        return torch.ones_like(u)

    def latent_log_prob(self, u: Tensor) -> Tensor:
        return self.distribution.log_prob(self.loc - math.pi + u)

    def curve_parameter(self, x: Tensor) -> Tensor:
        angle = torch.atan2(x[..., 1].double(), x[..., 0].double())
        return torch.remainder(angle - self.loc + math.pi, 2 * math.pi)

    def quantile(self, q: float) -> float:
        i = int(torch.searchsorted(self._cdf, torch.tensor(float(q), dtype=torch.float64)).clamp(1, len(self._cdf) - 1))
        t = (q - float(self._cdf[i - 1])) / float(self._cdf[i] - self._cdf[i - 1])
        return float(self._u_grid[i - 1] + t * (self._u_grid[i] - self._u_grid[i - 1]))

    def distance(self, x: Tensor) -> Tensor:
        return (x.double().norm(dim=-1) - 1).abs().to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        r = torch.rand(n, dtype=torch.float64, generator=generator)
        i = torch.searchsorted(self._cdf, r).clamp(1, len(self._u_grid) - 1)
        t = (r - self._cdf[i - 1]) / (self._cdf[i] - self._cdf[i - 1])
        u = self._u_grid[i - 1] + t * (self._u_grid[i] - self._u_grid[i - 1])
        return self.embed(u).to(dtype), (self.loc - math.pi + u).to(dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        angle = torch.atan2(x[..., 1].double(), x[..., 0].double())
        return self.distribution.log_prob(angle).to(x.dtype)


class Embedded:
    """A data set on a manifold in R^k placed isometrically in R^D (D >= k): x = Q y with a fixed random
    orthonormal Q (D × k, from `seed`). Densities on the manifold, arc lengths and curve positions are
    unchanged; `distance` adds the distance off the k-dimensional subspace. Wraps any set above (the
    curve methods pass through where the base set has them)."""

    def __init__(self, base, ambient_dim: int, seed: int = 0):
        k = base.ambient_dim
        if ambient_dim < k:
            raise ValueError(f"Embedded: 'ambient_dim' must be >= the base set's {k}, got {ambient_dim}")
        self.base, self.ambient_dim, self.manifold_dim = base, int(ambient_dim), base.manifold_dim
        gaussian = torch.randn(ambient_dim, k, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        self.Q = torch.linalg.qr(gaussian).Q  # (D, k), orthonormal columns
        for name in ("speed", "latent_log_prob", "quantile"):
            if hasattr(base, name):
                setattr(self, name, getattr(base, name))

    def _down(self, x: Tensor) -> Tensor:
        return x.double() @ self.Q

    def embed(self, u: Tensor) -> Tensor:
        return self.base.embed(u).double() @ self.Q.T

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        y, u = self.base.sample(n, generator)
        return (y.double() @ self.Q.T).to(dtype), u

    def log_prob(self, x: Tensor) -> Tensor:
        return self.base.log_prob(self._down(x)).to(x.dtype)

    def curve_parameter(self, x: Tensor) -> Tensor:
        return self.base.curve_parameter(self._down(x))

    def distance(self, x: Tensor) -> Tensor:
        y = self._down(x)
        off = (x.double() - y @ self.Q.T).norm(dim=-1)
        return torch.sqrt(self.base.distance(y).double().square() + off.square()).to(x.dtype)


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
