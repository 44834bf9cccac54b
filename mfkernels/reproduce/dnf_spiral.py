"""`mfkernels reproduce dnf-spiral`: the thin-spiral experiment of the DNF paper (paper 000, section
5.1, figure 2) with the standard flow, M-flow, DNF and PIE.

Each model trains on the same 10^4 spiral points (batch 100, 100 epochs in the full run, as in the
paper; `quick` trains 1500 steps). DNF uses σ² = 0.01 and λ = 1; M-flow the sequential schedule of
figure 2 (manifold phase, then density phase). Then, per model: the density on the paper's 100 × 100
grid and along the true spiral (TV / KL / KS against the true density, see mfkernels.metrics), the
mean distance of samples to the spiral and the test log-likelihood; and the time of the exact Gram
density of 500 points through M-flow's generator, mfkernels vs per-point autograd Jacobians. For DNF
the metrics are given for its own deflated density (eq. 8, σ/3 rule) and, under "gram", for the
exact Gram density of the same trained model.
Writes figure.png (samples and densities in the layout of figure 2), metrics.json and a checkpoint
per model under out_dir/<model>/.
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
from ..data import ThinSpiral
from ..models import build_model
from ..training import TrainConfig, fit

MODELS = ("standard", "mflow", "dnf", "pie")
TITLES = {"standard": "standard flow", "mflow": "M-flow", "dnf": "DNF", "pie": "PIE"}
GRID_LIMIT = 4.5  # the grid spans [-4.5, 4.5]^2: the spiral up to its 0.999 quantile of radius
N_TRAIN, N_TEST = 10_000, 2_000


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
        fit(model, train, TrainConfig(overwrite=True, steps=s.steps, batch_size=100, lr=1e-3, seed=seed, out_dir=str(out / name),
                                      checkpoint_every=max(s.steps // 4, 1), device=device, progress=progress,
                                      desc=f"dnf-spiral: {TITLES[name]}"))
        train_s = time.perf_counter() - start
        model = model.cpu().eval()
        trained[name] = model
        with torch.no_grad():
            samples = model.sample(s.samples, generator=torch.Generator().manual_seed(seed + 1))
            test_log_p = model.log_prob(test)
        along = metrics.density_along_curve(model.log_prob, spiral)
        finite = torch.isfinite(test_log_p)
        results["models"][name] = {
            **along,
            "sample_distance": float(spiral.distance(samples).mean()),
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
        drawn[name] = {"samples": samples, "grid": grid_log_density(model, grid, cell)}

    true_log_p = spiral.log_prob(test)
    results["true"] = {"test_log_likelihood": float(true_log_p.mean())}
    points = test[: s.timing_points]
    results["gram_timing"] = metrics.time_gram_density(trained["mflow"], points)
    results["gram_timing"]["model"] = "mflow"

    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    figure(out / "figure.png", spiral, train, drawn, axis, results)
    return results


def figure(path: Path, spiral: ThinSpiral, data: torch.Tensor, drawn: dict, axis: torch.Tensor,
           results: dict[str, Any]) -> None:
    """Figure 2 of paper 000: top row samples, bottom row log density on the grid (true: along the curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["true", *MODELS]
    fig, axes = plt.subplots(2, len(columns), figsize=(3.2 * len(columns), 6.6), constrained_layout=True)
    extent = [float(axis[0]), float(axis[-1]), float(axis[0]), float(axis[-1])]
    u = torch.linspace(1e-4, spiral.quantile(0.999), 3000, dtype=torch.float64)
    curve = spiral.embed(u)
    for col, name in enumerate(columns):
        top, bottom = axes[0, col], axes[1, col]
        if name == "true":
            top.scatter(*data[:2000].T, s=1, alpha=0.5, color="k")
            density = spiral.log_prob(curve)
            bottom.scatter(*curve.T, c=density, s=2, cmap="viridis")
            top.set_title("data")
            bottom.set_title("true density on the spiral")
        else:
            r = results["models"][name]
            top.scatter(*drawn[name]["samples"].T, s=1, alpha=0.5, color="C0")
            top.plot(*curve.T, color="k", lw=0.4, alpha=0.5)
            top.set_title(f"{TITLES[name]} samples\nmean dist {r['sample_distance']:.3f}")
            log_p = drawn[name]["grid"].reshape(len(axis), len(axis))
            finite = log_p[torch.isfinite(log_p)]
            if finite.numel():
                vmax = float(finite.max())
                image = torch.where(torch.isfinite(log_p), log_p, torch.full_like(log_p, math.nan))
                bottom.imshow(image.numpy(), origin="lower", extent=extent, cmap="viridis",
                              vmin=vmax - 8, vmax=vmax, interpolation="nearest")
            bottom.set_title(f"{TITLES[name]} log density\nTV {r['tv']:.3f}  KS {r['ks']:.3f}")
        for ax in (top, bottom):
            ax.set_xlim(extent[:2])
            ax.set_ylim(extent[2:])
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.savefig(path, dpi=110)
    plt.close(fig)
