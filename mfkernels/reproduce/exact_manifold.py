"""`mfkernels reproduce exact-manifold`: does training by the exact manifold likelihood (rectangular
flows, Caterini et al. 2021) beat the objectives that avoid the Gram term (paper 000 section 4)?

Four models on the same split-flow backbone (RQ spline couplings, same sizes, same steps, same data):
the two-phase M-flow (reconstruction, then the density of u; sequential schedule), DNF (σ = 0.1,
λ = 1), and RectangularFlow with the exact ½ log det(JᵀJ) and with its Hutchinson + CG gradient
(one Gaussian probe per point, as the rectangular-flows paper), reconstruction weight β = 50 (= 1/(2σ²) of DNF's
σ: the same price per squared unit off the manifold; at β = 1 the exact likelihood shrinks the circle
to a short arc in a 600-step trial, at β = 10 less so). Two data sets with exact manifold densities:
the thin spiral in R^2 (paper 000, figure 2) and a von Mises circle (κ = 2) placed isometrically in
R^16 (data.Embedded). Every model is scored by the same exact Gram density on its learned manifold
(DNF's too, instead of its deflation rule): TV, KL and KS against the true density along the curve
(metrics.density_along_curve), a Monte Carlo KL(true ‖ model) on held-out points, the test
log-likelihood, the samples' distance to the manifold and their coverage of held-out points, and the
seconds per training step. Writes metrics.json, figure.png and a checkpoint per model and set.

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
    | Rectangular Flows for Manifold Learning (Caterini et al., 2021)
    | https://arxiv.org/abs/2106.01413
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from .. import metrics
from ..data import Embedded, ThinSpiral, VonMisesCircle
from ..models import build_model
from ._train import train as train_model

MODELS = ("mflow", "dnf", "rectangular-exact", "rectangular-stochastic")
TITLES = {"mflow": "M-flow (two-phase)", "dnf": "DNF", "rectangular-exact": "rectangular, exact",
          "rectangular-stochastic": "rectangular, Hutchinson+CG"}
COVERAGE_RADIUS = {"spiral": 0.1, "circle16": 0.05}


def datasets() -> dict[str, Any]:
    return {"spiral": ThinSpiral(), "circle16": Embedded(VonMisesCircle(loc=0.5, concentration=2.0), 16, seed=0)}


@dataclasses.dataclass
class Settings:
    steps: int
    n_train: int
    num_layers: int
    inner_layers: int
    hidden_features: int
    beta: float = 50.0  # = 1 / (2σ²) for DNF's σ = 0.1: the same price per squared unit off the manifold
    lr: float = 1e-3
    batch_size: int = 100
    samples: int = 2000
    n_test: int = 2000
    seed: int = 0


def settings(quick: bool) -> Settings:
    if quick:
        return Settings(steps=200, n_train=2000, num_layers=3, inner_layers=2, hidden_features=32, n_test=500,
                        samples=500)
    return Settings(steps=4000, n_train=10_000, num_layers=5, inner_layers=3, hidden_features=64)


def build(name: str, s: Settings, features: int, seed: int):
    common = dict(features=features, manifold_dim=1, num_layers=s.num_layers, inner_layers=s.inner_layers,
                  hidden_features=s.hidden_features, seed=seed)
    if name == "mflow":
        return build_model("mflow", schedule="sequential", manifold_steps=s.steps // 2, **common)
    if name == "dnf":
        return build_model("dnf", noise_std=0.1, penalty=1.0, density="gram", **common)
    logdet = name.split("-")[1]
    # Gaussian probes, as the rectangular-flows paper: with d = 1 Rademacher probes (ε² = 1) would make the
    # estimate exact and the comparison empty
    return build_model("rectangular", logdet=logdet, beta=s.beta, probes=1, probe_distribution="gaussian", **common)


def evaluate(model, data, test: torch.Tensor, samples: torch.Tensor, radius: float) -> dict[str, Any]:
    with torch.no_grad():
        log_p = model.log_prob(test).double()
    true = data.log_prob(test).double()
    finite = torch.isfinite(log_p)
    quality = metrics.sample_quality(data, test, samples, radius)
    return {
        **metrics.density_along_curve(model.log_prob, data),
        "test_kl": float((true - log_p)[finite].mean()) if finite.any() else math.inf,
        "test_log_likelihood": float(log_p[finite].mean()) if finite.any() else None,
        "test_finite_fraction": float(finite.double().mean()),
        "sample_distance": quality["sample_distance"]["mean"],
        "coverage": quality["coverage"],
        "sample_ks_along_curve": quality["ks_along_curve"],
    }


def run(out_dir: str | Path = "exact-manifold", quick: bool = False, seed: int = 0, device: str | None = None,
        progress: bool = True) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = dataclasses.replace(settings(quick), seed=seed)
    results: dict[str, Any] = {"settings": dataclasses.asdict(s), "sets": {}}
    drawn: dict[str, dict[str, Any]] = {}
    for set_name, data in datasets().items():
        g = torch.Generator().manual_seed(seed)
        train, _ = data.sample(s.n_train, g)
        test, _ = data.sample(s.n_test, g)
        results["sets"][set_name] = {"true_test_log_likelihood": float(data.log_prob(test.double()).mean()),
                                     "models": {}}
        drawn[set_name] = {"data": train[:2000]}
        for name in MODELS:
            model = build(name, s, data.ambient_dim, seed)
            start = time.perf_counter()
            model = train_model(model, train, out / set_name / name, f"exact-manifold: {set_name} {TITLES[name]}",
                                steps=s.steps, lr=s.lr, seed=seed, device=device, progress=progress,
                                batch_size=s.batch_size)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                samples = model.sample(s.samples, generator=torch.Generator().manual_seed(seed + 1))
            entry = evaluate(model, data, test, samples, COVERAGE_RADIUS[set_name])
            entry["seconds_per_step"] = seconds / s.steps
            results["sets"][set_name]["models"][name] = entry
            drawn[set_name][name] = {"samples": samples,
                                     "along": metrics.densities_along_curve(model.log_prob, data, num=1000)}
    results["ranking_by_tv"] = {
        set_name: sorted(MODELS, key=lambda m: r["models"][m]["tv"]) for set_name, r in results["sets"].items()}
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    figure(out / "figure.png", datasets(), drawn, results)
    return results


def _plane(data, x: torch.Tensor) -> torch.Tensor:
    """Points in the plane of the base curve (Embedded sets are drawn through Qᵀ)."""
    return data._down(x).float() if isinstance(data, Embedded) else x


def figure(path: Path, sets: dict[str, Any], drawn: dict, results: dict[str, Any]) -> None:
    """Per data set two rows: samples (in the curve's plane) titled with their distance and coverage,
    and the density along the curve against the true one (black), titled with TV and KS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["data", *MODELS]
    fig, axes = plt.subplots(2 * len(sets), len(columns), figsize=(3.2 * len(columns), 6.2 * len(sets)),
                             constrained_layout=True, squeeze=False)
    for row, (set_name, data) in enumerate(sets.items()):
        top_row, bottom_row = axes[2 * row], axes[2 * row + 1]
        u = torch.linspace(0, data.quantile(0.999), 2000, dtype=torch.float64)
        curve = _plane(data, data.embed(u))
        limit = 1.25 * float(curve.abs().max())
        peak = 0.0
        for col, name in enumerate(columns):
            top, bottom = top_row[col], bottom_row[col]
            if name == "data":
                top.scatter(*_plane(data, drawn[set_name]["data"]).T, s=1, alpha=0.5, color="k")
                top.set_title(f"{set_name}: data")
                along_u, p, _ = drawn[set_name][MODELS[0]]["along"]
                bottom.plot(along_u, p, color="k")
                bottom.set_title("true density along the curve")
            else:
                r = results["sets"][set_name]["models"][name]
                top.scatter(*_plane(data, drawn[set_name][name]["samples"]).T, s=1, alpha=0.5, color="C0")
                top.plot(*curve.T, color="k", lw=0.4, alpha=0.5)
                top.set_title(f"{TITLES[name]}\nmean dist {r['sample_distance']:.3f}, "
                              f"recall {r['coverage']['recall']:.2f}", fontsize=9)
                along_u, p, q = drawn[set_name][name]["along"]
                du = float(along_u[1] - along_u[0])
                q = q / (q.sum() * du) if q.sum() > 0 else q
                bottom.plot(along_u, p, color="k", lw=0.8)
                bottom.plot(along_u, q, color="C0")
                bottom.set_title(f"TV {r['tv']:.3f}  KS {r['ks']:.3f}  KL {r['test_kl']:.2f}", fontsize=9)
                peak = max(peak, float(q.max()))
            top.set_xlim(-limit, limit)
            top.set_ylim(-limit, limit)
            top.set_aspect("equal")
            top.set_xticks([])
            top.set_yticks([])
            bottom.set_xlabel("u (position along the curve)")
        for ax in bottom_row:
            ax.set_ylim(0, 1.05 * min(max(peak, float(p.max())), 3 * float(p.max())))
    fig.savefig(path, dpi=80)
    plt.close(fig)
