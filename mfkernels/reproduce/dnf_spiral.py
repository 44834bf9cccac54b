"""`mfkernels reproduce dnf-spiral`: the thin-spiral experiment of the DNF paper (paper 000, section
5.1, figure 2) with the standard flow, M-flow, DNF and PIE.

Each model trains on the same 10^4 spiral points (batch 100, 100 epochs in the full run, as in the
paper; `quick` trains 1500 steps). DNF uses σ² = 0.01 and λ = 1; M-flow the sequential schedule of
figure 2 (manifold phase, then density phase). Then, per model: the density on the paper's 100 × 100
grid and along the true spiral (TV / KL / KS against the true density, see mfkernels.metrics), both
sides of sample quality (the mean distance of samples to the spiral; the coverage of held-out points by
the samples at radius COVERAGE_RADIUS and the KS distance of samples and held-out points along the
spiral) and the test log-likelihood; and the time of the exact Gram
density of 500 points through M-flow's generator, mfkernels vs per-point autograd Jacobians. For DNF
the metrics are given for its own deflated density (eq. 8, σ/3 rule) and, under "gram", for the
exact Gram density of the same trained model.
Writes figure.png (samples and densities in the layout of figure 2), metrics.json and a checkpoint
per model under out_dir/<model>/.

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
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
from ..bench.gram_timing import time_gram_density
from ..data import ThinSpiral
from ..models import build_model
from ._train import train as train_model

MODELS = ("standard", "mflow", "dnf", "pie")
TITLES = {"standard": "standard flow", "mflow": "M-flow", "dnf": "DNF", "pie": "PIE"}
GRID_LIMIT = 4.5  # the grid spans [-4.5, 4.5]^2: the spiral up to its 0.999 quantile of radius
N_TRAIN, N_TEST = 10_000, 2_000
COVERAGE_RADIUS = 0.1  # a held-out point counts as covered with a sample this close (the spiral spans ±4)


@dataclasses.dataclass
class Settings:
    steps: int
    grid: int = 100
    samples: int = 2000
    timing_points: int = 500
    seed: int = 0


def settings(quick: bool) -> Settings:
    return Settings(steps=1500) if quick else Settings(steps=100 * N_TRAIN // 100)


def model_options(name: str, steps: int) -> dict[str, Any]:
    if name == "dnf":
        return {"noise_std": 0.1, "penalty": 1.0}
    if name == "mflow":
        return {"schedule": "sequential", "manifold_steps": steps // 2}
    return {}


def grid_points(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.linspace(-GRID_LIMIT, GRID_LIMIT, n)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    return axis, torch.stack([xx.flatten(), yy.flatten()], dim=1)


@torch.no_grad()
def grid_log_density(model, points: torch.Tensor, cell: float) -> torch.Tensor:
    """The model's log density on the grid. Gram densities are defined at a point's projection, so
    they are drawn only at grid points within one cell of the learned manifold."""
    log_p = torch.cat([model.log_prob(chunk) for chunk in points.split(4096)])
    if model.name in ("mflow", "pie"):
        distance = torch.cat([(chunk - model.project(chunk)).norm(dim=1) for chunk in points.split(4096)])
        log_p = torch.where(distance <= cell, log_p, torch.full_like(log_p, -math.inf))
    return log_p


def run(out_dir: str | Path = "dnf-spiral", quick: bool = False, seed: int = 0, device: str | None = None,
        progress: bool = True) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = dataclasses.replace(settings(quick), seed=seed)
    spiral = ThinSpiral()
    g = torch.Generator().manual_seed(seed)
    train, _ = spiral.sample(N_TRAIN, g)
    test, _ = spiral.sample(N_TEST, g)
    axis, grid = grid_points(s.grid)
    cell = float(axis[1] - axis[0])

    results: dict[str, Any] = {"settings": dataclasses.asdict(s), "alpha": spiral.alpha, "models": {}}
    drawn: dict[str, dict[str, torch.Tensor]] = {}
    trained = {}
    for name in MODELS:
        model = build_model(name, seed=seed, **model_options(name, s.steps))
        start = time.perf_counter()
        model = train_model(model, train, out / name, f"dnf-spiral: {TITLES[name]}", steps=s.steps, lr=1e-3,
                            seed=seed, device=device, progress=progress, checkpoints=4)
        train_s = time.perf_counter() - start
        trained[name] = model
        with torch.no_grad():
            samples = model.sample(s.samples, generator=torch.Generator().manual_seed(seed + 1))
            test_log_p = model.log_prob(test)
        along = metrics.density_along_curve(model.log_prob, spiral)
        finite = torch.isfinite(test_log_p)
        quality = metrics.sample_quality(spiral, test, samples, COVERAGE_RADIUS)
        results["models"][name] = {
            **along,
            "sample_distance": quality["sample_distance"]["mean"],
            "coverage": quality["coverage"],
            "sample_ks_along_curve": quality["ks_along_curve"],
            # DNF's density is 0 off its σ/3 band: the mean is over the points where it is positive
            "test_log_likelihood": float(test_log_p[finite].mean()) if finite.any() else None,
            "test_finite_fraction": float(finite.float().mean()),
            "train_seconds": train_s,
        }
        if name == "dnf":  # the exact Gram density of the same trained DNF, as M-flow evaluates it
            with torch.no_grad():
                gram_test = model.gram_log_prob(test)
            results["models"][name]["gram"] = {
                **metrics.density_along_curve(model.gram_log_prob, spiral),
                "test_log_likelihood": float(gram_test.mean()),
            }
        drawn[name] = {"samples": samples, "grid": grid_log_density(model, grid, cell),
                       "along": metrics.densities_along_curve(model.log_prob, spiral, num=1000)}

    true_log_p = spiral.log_prob(test)
    results["true"] = {"test_log_likelihood": float(true_log_p.mean())}
    points = test[: s.timing_points]
    results["gram_timing"] = time_gram_density(trained["mflow"], points)
    results["gram_timing"]["model"] = "mflow"

    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    figure(out / "figure.png", spiral, train, drawn, axis, results)
    return results


def figure(path: Path, spiral: ThinSpiral, data: torch.Tensor, drawn: dict, axis: torch.Tensor,
           results: dict[str, Any]) -> None:
    """Figure 2 of paper 000 and its metrics. Row 1: samples, titled with closeness (mean distance to
    the spiral) and coverage (recall of held-out points); row 2: log density on the grid, one colour
    scale for the row (the standard flow's is a 2-D density: it saturates); row 3: the density along
    the spiral against arc position u, renormalised as TV and KS compare it, the true one in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["true", *MODELS]
    fig, axes = plt.subplots(3, len(columns), figsize=(3.2 * len(columns), 9.6), constrained_layout=True)
    extent = [float(axis[0]), float(axis[-1]), float(axis[0]), float(axis[-1])]
    u = torch.linspace(1e-4, spiral.quantile(0.999), 3000, dtype=torch.float64)
    curve = spiral.embed(u)
    true_density = spiral.log_prob(curve)
    finite_max = [float(d["grid"][torch.isfinite(d["grid"])].max()) for d in drawn.values()
                  if torch.isfinite(d["grid"]).any()]
    vmax = max([float(true_density.max()), *finite_max])
    scale = {"cmap": "viridis", "vmin": vmax - 10, "vmax": vmax}
    top_density = 0.0
    for col, name in enumerate(columns):
        top, middle, bottom = axes[:, col]
        if name == "true":
            top.scatter(*data[:2000].T, s=1, alpha=0.5, color="k")
            middle.scatter(*curve.T, c=true_density, s=2, **scale)
            top.set_title("data")
            middle.set_title("true log density on the spiral")
            along_u, p, _ = next(iter(drawn.values()))["along"]
            bottom.plot(along_u, p, color="k")
            bottom.set_title("true density along the spiral")
        else:
            r = results["models"][name]
            top.scatter(*drawn[name]["samples"].T, s=1, alpha=0.5, color="C0")
            top.plot(*curve.T, color="k", lw=0.4, alpha=0.5)
            top.set_title(f"{TITLES[name]} samples\nmean dist {r['sample_distance']:.3f}, "
                          f"recall@{COVERAGE_RADIUS:g} {r['coverage']['recall']:.2f}")
            log_p = drawn[name]["grid"].reshape(len(axis), len(axis))
            image = torch.where(torch.isfinite(log_p), log_p, torch.full_like(log_p, math.nan))
            middle.imshow(image.numpy(), origin="lower", extent=extent, interpolation="nearest", **scale)
            middle.set_title(f"{TITLES[name]} log density")
            along_u, p, q = drawn[name]["along"]
            du = float(along_u[1] - along_u[0])
            q = q / (q.sum() * du) if q.sum() > 0 else q
            bottom.plot(along_u, p, color="k", lw=0.8)
            bottom.plot(along_u, q, color="C0")
            bottom.set_title(f"{TITLES[name]} along the spiral\nTV {r['tv']:.3f}  KS {r['ks']:.3f}")
            top_density = max(top_density, float(q.max()))
        for ax in (top, middle):
            ax.set_xlim(extent[:2])
            ax.set_ylim(extent[2:])
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
        bottom.set_xlabel("u (position along the spiral)")
    for ax in axes[2]:  # one scale for the row; spikes beyond 3x the true density's peak are cut off
        ax.set_ylim(0, 1.05 * min(max(top_density, float(p.max())), 3 * float(p.max())))
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(scale["vmin"], scale["vmax"]), cmap="viridis"),
                 ax=axes[1, -1], label="log density")
    fig.savefig(path, dpi=90)
    plt.close(fig)
