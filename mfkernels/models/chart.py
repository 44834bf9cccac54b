"""Chart (atlas) flows (paper 004): a data manifold of any topology covered by K overlapping charts.

- Chart centres v_k and regions U_k from a vector-quantised autoencoder (`mfkernels.models.vq`), trained for
  the first `vq_steps` steps and frozen after.
- Chart maps g_k = c_k ∘ h_k⁻¹: h_k a flow on R^d conditioned on v_k (its context), c_k a conformal
  dimension-raising map (`flows.ChartConformalMaps`: affine frame + special conformal map, JᵀJ = λ²I);
  f_k = h_k ∘ c_k^† goes the other way.
- Density, eq (2): p(x) = Σ_{k: x ∈ U_k} p_k |det Jf_k Jf_kᵀ|^{1/2} q(f_k(x)), with
  ½ log det(Jg_kᵀ Jg_k) = d log λ_k(y) − log|det ∂h_k/∂y| analytic (y = c_k^†(x)); evaluated for all
  (x, k) pairs with x ∈ U_k in one batch, then a log-sum-exp over each point's charts.
- Training after the VQ phase: −log p(x) + w · mean over pairs ‖x − c_k(c_k^†(x))‖², jointly (as in
  conformal embedding flows). `split_gradients=True` instead feeds the likelihood detached chart
  coordinates (M-flow's manifold/density split); we measured it worse: a chart that covers a whole circle
  can slide along it at no reconstruction cost, and the flow then chases a moving target (two circles,
  3000 steps: test log p −4.69 vs −2.535 joint, the uniform density being −2.531).
- Sampling: k ~ p_k, z ~ q, x = g_k(z). Inference: `encode(x)` the expectation Σ_k p(k|x) f_k(x), or
  `encode(x, stochastic=True)` with k ~ p(k|x); `project(x)` through the most probable chart.
The charts start placed on the data: at the first chart step each chart's origin, frame and scale
come from the mean and principal axes of the batch points nearest its centre.

References:
    | Chart flows (a poster)
    | docs/papers.md, paper 004
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from ..flows import ChartConformalMaps, rq_spline_flow, standard_normal_log_prob
from ..ops import cannot_read_values
from .base import Model, ModelConfig, seeded
from .vq import VQAutoencoder, chart_membership


@dataclasses.dataclass
class ChartFlowConfig(ModelConfig):
    """num_charts K; code_dim: the VQ latent size; overlap ε and neighbours m of the chart regions;
    vq_steps: steps of the VQ phase; commitment β; codebook "ema" | "loss"; reconstruction_weight w;
    split_gradients: the likelihood sees detached chart coordinates (see the module docstring);
    curved: conformal maps with the special conformal step (charts that bend into spheres). The chart flows h_k have
    `num_layers` RQ layers (`num_bins`, `tail_bound`, `hidden_features`) conditioned on v_k."""

    num_charts: int = 8
    code_dim: int = 2
    overlap: float = 0.5
    neighbours: int = 1
    vq_steps: int = 1000
    commitment: float = 0.25
    codebook: str = "ema"
    reconstruction_weight: float = 100.0
    curved: bool = True
    split_gradients: bool = False
    num_layers: int = 3
    tail_bound: float = 4.0

    def validate(self) -> None:
        if not 1 <= self.manifold_dim < self.features:
            raise ValueError(f"ChartFlowConfig: need 1 <= manifold_dim < features, got {self.manifold_dim}, "
                             f"{self.features}")
        if not 1 <= self.neighbours <= self.num_charts or self.overlap < 0 or self.vq_steps < 0:
            raise ValueError(f"ChartFlowConfig: need 1 <= neighbours <= num_charts, overlap >= 0, vq_steps >= 0, got "
                             f"{self.neighbours}, {self.num_charts}, {self.overlap}, {self.vq_steps}")
        self.check_choice("codebook", ("ema", "loss"))
        self.check_backbone(("spline",))


class ChartFlow(Model):
    config_class = ChartFlowConfig
    name = "chart"

    def __init__(self, config: ChartFlowConfig | None = None, **options):
        super().__init__(config, **options)
        c = self.config
        with seeded(c.seed):
            self.vq = VQAutoencoder(c.features, c.code_dim, c.num_charts, c.hidden_features, c.commitment,
                                    c.codebook, seed=c.seed)
            self.maps = ChartConformalMaps(c.num_charts, c.manifold_dim, c.features, c.curved)
            self.flow = rq_spline_flow(c.manifold_dim, c.num_layers, c.num_bins, c.tail_bound, c.hidden_features,
                                       context_features=c.code_dim, seed=c.seed)
        self.chart_logits = nn.Parameter(torch.zeros(c.num_charts))
        self.register_buffer("charts_placed", torch.tensor(False))
        self.stage = 1 if c.vq_steps == 0 else 0

    @property
    def latent_dim(self) -> int:
        return self.config.manifold_dim

    def begin_step(self, step: int) -> None:
        self.stage = 0 if step < self.config.vq_steps else 1

    # chart regions and pairs
    def membership(self, x: Tensor) -> Tensor:
        """(B, K) bool: x ∈ U_k."""
        self._check_input(x)
        with torch.no_grad():
            return chart_membership(self.vq.encoder(x), self.vq.codes, self.config.overlap, self.config.neighbours)

    def _pairs(self, x: Tensor) -> dict[str, Tensor]:
        """Every (x_b, k) with x_b ∈ U_k: point and chart indices, y = c_k^†(x_b), z = h_k(y), and the
        pair's log p_k + log q(z) + log|det ∂z/∂y| − d log λ(y)."""
        self._check_input(x)
        point, chart = self.membership(x).nonzero(as_tuple=True)
        y, log_lambda = self.maps.inverse(x[point], chart)
        context = self.vq.codes[chart]
        if self.config.split_gradients:
            y_flow, log_lambda_flow = y.detach(), log_lambda.detach()
        else:
            y_flow, log_lambda_flow = y, log_lambda
        z, logdet = self.flow(y_flow, context)
        log_weight = torch.log_softmax(self.chart_logits, 0)[chart]
        log_p = log_weight + standard_normal_log_prob(z) + logdet - self.config.manifold_dim * log_lambda_flow
        return {"point": point, "chart": chart, "y": y, "z": z, "log_p": log_p}

    def _per_point(self, x: Tensor, pairs: dict[str, Tensor]) -> Tensor:
        """(B, K) pair log densities, −inf where x ∉ U_k."""
        table = x.new_full((x.shape[0], self.config.num_charts), -math.inf)
        return table.index_put((pairs["point"], pairs["chart"]), pairs["log_p"])

    def log_prob(self, x: Tensor) -> Tensor:
        pairs = self._pairs(x)
        return self._nan_where_not_finite(x, torch.logsumexp(self._per_point(x, pairs), dim=1))

    def chart_posterior(self, x: Tensor) -> Tensor:
        """(B, K) p(k | x) (zero outside x's charts)."""
        return torch.softmax(self._per_point(x, self._pairs(x)), dim=1)

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self._check_input(x)
        if self.stage == 0:
            return self.vq.loss(x)
        if not bool(self.charts_placed):
            self.place_charts(x)
        pairs = self._pairs(x)
        log_p = torch.logsumexp(self._per_point(x, pairs), dim=1)
        reconstruction = (self.maps(pairs["y"], pairs["chart"])[0] - x[pairs["point"]]).square().sum(1).mean()
        nll = -log_p.mean()
        return nll + self.config.reconstruction_weight * reconstruction, {
            "nll": nll.detach(), "reconstruction": reconstruction.detach(),
            "charts_per_point": torch.tensor(len(pairs["point"]) / max(len(x), 1))}

    @torch.no_grad()
    def place_charts(self, x: Tensor) -> None:
        """Origin, frame and scale of each chart from the points of x nearest its centre (mean, principal
        axes, spread along the first d axes); charts with fewer than d + 1 such points keep theirs."""
        self._check_input(x)
        nearest = self.vq.nearest(self.vq.encoder(x))
        d = self.config.manifold_dim
        for k in range(self.config.num_charts):
            points = x[nearest == k].double()
            if len(points) < d + 1:
                continue
            origin = points.mean(0)
            _, s, vt = torch.linalg.svd(points - origin, full_matrices=True)
            spread = float(s[:d].mean() / math.sqrt(len(points))) or 1.0
            self.maps.set_chart(k, origin, vt.T, spread)
        self.charts_placed.fill_(True)

    # the shared API
    def encode(self, x: Tensor, stochastic: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Chart coordinates z: Σ_k p(k|x) f_k(x), or f_k(x) with k ~ p(k|x) when stochastic."""
        pairs = self._pairs(x)
        posterior = torch.softmax(self._per_point(x, pairs), dim=1)
        if stochastic:
            k = torch.multinomial(posterior, 1, generator=generator)[:, 0]
            return self.chart_coordinates(x, k)
        weights = posterior[pairs["point"], pairs["chart"]]
        z = torch.zeros(x.shape[0], self.latent_dim, dtype=x.dtype, device=x.device).index_add(
            0, pairs["point"], weights[:, None] * pairs["z"])
        return self._nan_where_not_finite(x, z)

    @staticmethod
    def _nan_where_not_finite(x: Tensor, out: Tensor) -> Tensor:
        """A row of x with a NaN/inf lies in no chart region; like every other model, NaN comes out
        for it (not the 0 or -inf an empty chart sum would give)."""
        bad = ~torch.isfinite(x).all(1)
        return torch.where(bad.reshape(-1, *([1] * (out.dim() - 1))), torch.full_like(out, math.nan), out)

    def chart_coordinates(self, x: Tensor, chart: Tensor) -> Tensor:
        """f_k(x) = h_k(c_k^†(x)) for the given chart of each point."""
        return self.flow(self.maps.inverse(x, chart)[0], self.vq.codes[chart])[0]

    def most_probable_chart(self, x: Tensor) -> Tensor:
        return self.chart_posterior(x).argmax(1)

    def decode(self, z: Tensor, chart: Tensor | int | None = None) -> Tensor:
        """g_k(z); chart: (B,) indices, one index, or None for the chart with the largest p_k."""
        if chart is None:
            chart = int(self.chart_logits.argmax())
        if isinstance(chart, int):
            chart = torch.full((z.shape[0],), chart, dtype=torch.long, device=z.device)
        K = self.config.num_charts
        if z.dim() != 2 or z.shape[1] != self.latent_dim or chart.shape != z.shape[:1]:
            raise ValueError(f"ChartFlow.decode: expected z (B, {self.latent_dim}) and 'chart' (B,), got "
                             f"{tuple(z.shape)} and {tuple(chart.shape)}")
        if not cannot_read_values() and chart.numel() and not bool(((chart >= 0) & (chart < K)).all()):
            raise ValueError(f"ChartFlow.decode: argument 'chart' must hold chart indices in [0, {K}), got "
                             f"min {int(chart.min())}, max {int(chart.max())}")
        y = self.flow.inverse(z, self.vq.codes[chart])[0]
        return self.maps(y, chart)[0]

    def project(self, x: Tensor) -> Tensor:
        """c_k(c_k^†(x)) in the most probable chart of each point (the chart flow cancels)."""
        chart = self.most_probable_chart(x)
        return self.maps(self.maps.inverse(x, chart)[0], chart)[0]

    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        p = self._param()
        if n == 0:  # torch.multinomial refuses to draw nothing; every other model returns (0, D)
            return torch.empty(0, self.config.features, dtype=p.dtype, device=p.device)
        chart = torch.multinomial(torch.softmax(self.chart_logits.detach(), 0), n, replacement=True,
                                  generator=generator)
        z = temperature * torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype, device=p.device)
        return self.decode(z, chart)

    def charts_used(self, x: Tensor, min_share: float = 0.01) -> int:
        """Charts that are the most probable chart of at least min_share of the points x."""
        share = torch.bincount(self.most_probable_chart(x), minlength=self.config.num_charts).double() / len(x)
        return int((share >= min_share).sum())
