"""`mfkernels reproduce spread-dimension`: the intrinsic-dimension experiments of the spread-flow paper
(paper 003, section 5.1, figures 3-5 and 12): a spread flow on sine (x2 = sin 2x1), line (x2 = x1),
S-curve (2-D in R^3) and fading square (1-D in R^1024), each read off the spectrum of the learned AAᵀ.

Per data set: 10^4 training points, centred (the prior has mean 0; samples are shifted back), Adam
with cosine decay; the recipe below per set (the paper trains 10k-200k steps at lr 3e-4-5e-4; the
quick recipes use fewer steps at a higher rate and the entropy term of eq 39, which keeps the flow
from shrinking the whole data set instead of flattening it: without it, the loss also falls by
contracting along the manifold, and the gap between the kept and the collapsed eigenvalues closes).
Then the spectrum, the intrinsic dimension (`ops.intrinsic_dimension`: the largest ratio of
consecutive eigenvalues, if ≥ `dimension_gap`), the mean distance to the true manifold of 2000
samples from the degenerate prior (σ = 0, `SpreadFlow.sample`) and of projected test points.
Writes <set>/spectrum.png, <set>/samples.png and a checkpoint per set, and metrics.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..data.spread import SPREAD_DATASETS
from ..models import build_model
from ..training import TrainConfig, fit

DATASETS = ("sine", "line", "s_curve", "fading_square")
N_TRAIN, N_TEST, N_SAMPLES = 10_000, 1_000, 2_000


@dataclasses.dataclass
class Recipe:
    steps: int
    lr: float
    batch_size: int = 100
    num_layers: int = 8
    hidden_features: int = 64
    permutation: str = "roll"
    entropy: bool = True
    weight_decay: float = 0.0


def recipe(name: str, quick: bool) -> Recipe:
    if name == "fading_square":
        # the paper's L2 weight decay 0.1 (appendix C.4): without it Adam's noisy steps on the 1024 x 1024
        # A random-walk its entries and the spectrum blows up instead of collapsing
        return Recipe(steps=600 if quick else 5000, lr=1e-2 if quick else 3e-3, num_layers=4, permutation="random",
                      entropy=False, weight_decay=0.1)
    if name == "s_curve":
        return Recipe(steps=4000 if quick else 20000, lr=1e-2 if quick else 3e-3)
    return Recipe(steps=2500 if quick else 10000, lr=1e-2 if quick else 3e-3)


def run(out_dir: str | Path = "spread-dimension", quick: bool = False, seed: int = 0, device: str | None = None,
        progress: bool = True, datasets: tuple[str, ...] = DATASETS) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(datasets) - set(SPREAD_DATASETS))
    if unknown:
        raise ValueError(f"reproduce spread-dimension: unknown data set(s) {unknown}; expected some of {list(DATASETS)}")
    results: dict[str, Any] = {"quick": quick, "seed": seed, "datasets": {}}
    for name in datasets:
        results["datasets"][name] = _one(name, out / name, recipe(name, quick), seed, device, progress)
        (out / "metrics.json").write_text(json.dumps(results, indent=2))
    return results


def _one(name: str, out: Path, r: Recipe, seed: int, device: str | None, progress: bool) -> dict[str, Any]:
    data = SPREAD_DATASETS[name]()
    g = torch.Generator().manual_seed(seed)
    train, _ = data.sample(N_TRAIN, g)
    test, _ = data.sample(N_TEST, g)
    mean = train.mean(0)
    model = build_model("spread", features=data.ambient_dim, num_layers=r.num_layers,
                        hidden_features=r.hidden_features, permutation=r.permutation, entropy=r.entropy, seed=seed)
    start = time.perf_counter()
    fit(model, train - mean, TrainConfig(overwrite=True, steps=r.steps, batch_size=r.batch_size, lr=r.lr, weight_decay=r.weight_decay, seed=seed, out_dir=str(out),
                                         checkpoint_every=max(r.steps // 4, 1), device=device, progress=progress,
                                         desc=f"spread-dimension: {name}"))
    seconds = time.perf_counter() - start
    model = model.cpu().eval()
    spectrum = model.spectrum()
    with torch.no_grad():
        samples = model.sample(N_SAMPLES, generator=torch.Generator().manual_seed(seed + 1)) + mean
        projected = model.project(test - mean) + mean
    estimated = model.intrinsic_dimension()
    ratios = (spectrum[:-1] / spectrum[1:]).tolist()
    # a prior draw far out in the tail can leave the inverse couplings' exp range: such a sample is
    # infinitely far (counted, and kept in the order statistics as inf) instead of a NaN distance
    finite = samples.isfinite().all(1)
    sample_distance = torch.full((len(samples),), math.inf, dtype=torch.float64)
    sample_distance[finite] = data.distance(samples[finite]).double()
    result = {
        "true_dimension": data.intrinsic_dim,
        "estimated_dimension": estimated,
        "spectrum": spectrum[:20].tolist(),
        "largest_gap_ratio": max(ratios),
        # the mean (over the finite samples) is dominated by the few prior draws beyond the data's latent
        # support, which the inverse couplings stretch exponentially; the median says where the bulk lie
        "sample_distance": float(sample_distance[finite].mean()),
        "nonfinite_samples": int((~finite).sum()),
        "sample_distance_median": float(sample_distance.median()),
        "sample_distance_q90": float(sample_distance.quantile(0.9)),
        "projected_test_distance": float(data.distance(projected).mean()),
        "data_scale": float((train - mean).norm(dim=1).mean()),
        "train_seconds": seconds,
        "recipe": dataclasses.asdict(r),
    }
    _plot_spectrum(out / "spectrum.png", name, spectrum, result)
    _plot_samples(out / "samples.png", name, data, test, samples, result)
    return result


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_spectrum(path: Path, name: str, spectrum: torch.Tensor, result: dict[str, Any]) -> None:
    plt = _pyplot()
    shown = spectrum[:20]
    fig, ax = plt.subplots(figsize=(4.5, 3.2), constrained_layout=True)
    ax.bar(range(1, len(shown) + 1), shown.numpy(), color=["C0" if i < result["estimated_dimension"] else "C7"
                                                          for i in range(len(shown))])
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("eigenvalue of AAᵀ")
    ax.set_xticks(range(1, len(shown) + 1))
    ax.set_title(f"{name}: estimated dim {result['estimated_dimension']} (true {result['true_dimension']})")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_samples(path: Path, name: str, data, test: torch.Tensor, samples: torch.Tensor, result: dict) -> None:
    plt = _pyplot()
    title = (f"samples (σ = 0), distance to the manifold\nmedian {result['sample_distance_median']:.3g}, "
             f"mean {result['sample_distance']:.3g}")
    if data.ambient_dim <= 3:  # frame the data; far-off samples are counted, not drawn
        low, high = test.min(0).values, test.max(0).values
        pad = 0.25 * (high - low)
        inside = ((samples >= low - pad) & (samples <= high + pad)).all(1)
        title += f"; {int((~inside).sum())} of {len(samples)} outside the frame"
        samples = samples[inside]
        low, high = (low - pad).tolist(), (high + pad).tolist()
    if name == "fading_square":
        fig, axes = plt.subplots(2, 8, figsize=(10, 2.8), constrained_layout=True)
        for row, (images, label) in enumerate(((test, "data"), (samples, "samples"))):
            for col in range(8):
                ax = axes[row, col]
                ax.imshow(images[col].reshape(data.size, data.size).numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[row, 0].set_ylabel(label)
        fig.suptitle(title)
    elif data.ambient_dim == 3:
        fig = plt.figure(figsize=(8, 3.8), constrained_layout=True)
        for i, (points, label) in enumerate(((test, "data"), (samples[: len(test)], title))):
            ax = fig.add_subplot(1, 2, i + 1, projection="3d")
            ax.scatter(*points.T.numpy(), s=1, c=points[:, 0].numpy(), cmap="viridis")
            ax.view_init(10, -70)
            ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), zlim=(low[2], high[2]))
            ax.set_title(label, fontsize=9)
    else:
        fig, ax = plt.subplots(figsize=(4.5, 3.6), constrained_layout=True)
        ax.scatter(*test.T.numpy(), s=2, color="k", alpha=0.4, label="data")
        ax.scatter(*samples.T.numpy(), s=2, color="C3", alpha=0.4, label="samples")
        ax.legend(markerscale=4)
        ax.set_title(title, fontsize=9)
        ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]))
        ax.set_aspect("equal")
    fig.savefig(path, dpi=110)
    plt.close(fig)
