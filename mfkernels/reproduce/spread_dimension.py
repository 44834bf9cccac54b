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
samples from the degenerate prior (σ = 0, `SpreadFlow.sample`) and of projected test points, and the
other side of sample quality: the coverage of held-out points by the samples (recall at a radius of
COVERAGE_FRACTION of the data's scale) and, for the 1-D sets, the KS distance along the curve.
Writes <set>/spectrum.png, <set>/samples.png and a checkpoint per set, and metrics.json.

References:
    | Spread Flows for Manifold Modelling (Zhang et al., 2021)
    | https://arxiv.org/abs/2109.14216
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from .. import metrics
from ..data.spread import SPREAD_DATASETS
from ..models import build_model
from ._train import train as train_model

COVERAGE_FRACTION = 0.05  # coverage radius: this fraction of the data's mean distance from its mean
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
        raise ValueError(
            f"reproduce spread-dimension: unknown data set(s) {unknown}; expected some of {list(DATASETS)}"
        )
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
    model = train_model(model, train - mean, out, f"spread-dimension: {name}", steps=r.steps, lr=r.lr, seed=seed,
                        device=device, progress=progress, batch_size=r.batch_size, checkpoints=4,
                        weight_decay=r.weight_decay)
    seconds = time.perf_counter() - start
    spectrum = model.spectrum()
    with torch.no_grad():
        samples = model.sample(N_SAMPLES, generator=torch.Generator().manual_seed(seed + 1)) + mean
        projected = model.project(test - mean) + mean
    estimated = model.intrinsic_dimension()
    ratios = (spectrum[:-1] / spectrum[1:]).tolist()
    # a prior draw far out in the tail can leave the inverse couplings' exp range: sample_quality counts
    # such a sample as infinitely far (kept in the order statistics as inf) instead of a NaN distance
    data_scale = float((train - mean).norm(dim=1).mean())
    quality = metrics.sample_quality(data, test, samples, COVERAGE_FRACTION * data_scale)
    closeness = quality["sample_distance"]
    result = {
        "true_dimension": data.intrinsic_dim,
        "estimated_dimension": estimated,
        "spectrum": spectrum[:20].tolist(),
        "largest_gap_ratio": max(ratios),
        # the mean (over the finite samples) is dominated by the few prior draws beyond the data's latent
        # support, which the inverse couplings stretch exponentially; the median says where the bulk lie
        "sample_distance": closeness["mean"],
        "nonfinite_samples": closeness["nonfinite"],
        "sample_distance_median": closeness["median"],
        "sample_distance_q90": closeness["q90"],
        # the other side: do the samples cover the held-out data (and, 1-D sets, match it along the curve)
        "coverage": quality["coverage"],
        **({"ks_along_curve": quality["ks_along_curve"]} if "ks_along_curve" in quality else {}),
        "projected_test_distance": float(data.distance(projected).mean()),
        "data_scale": data_scale,
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
    title = (f"samples (σ = 0), distance to the manifold:\nmedian {result['sample_distance_median']:.3g}, "
             f"mean {result['sample_distance']:.3g}\nrecall@{result['coverage']['radius']:.2g} "
             f"{result['coverage']['recall']:.2f}" + (f", KS along the curve {result['ks_along_curve']:.3f}"
                                                      if "ks_along_curve" in result else ""))
    if data.ambient_dim <= 3:  # frame the data; far-off samples are counted, not drawn
        low, high = test.min(0).values, test.max(0).values
        pad = 0.25 * (high - low)
        inside = ((samples >= low - pad) & (samples <= high + pad)).all(1)
        title += f"\n{int((~inside).sum())} of {len(samples)} samples outside the frame"
        samples = samples[inside]
        low, high = (low - pad).tolist(), (high + pad).tolist()
    if name == "fading_square":  # 8 images of each, and the grey levels of all (coverage at a glance)
        fig = plt.figure(figsize=(13, 3.2), constrained_layout=True)
        grid = fig.add_gridspec(2, 11)
        for row, (images, label) in enumerate(((test, "data"), (samples, "samples"))):
            for col in range(8):
                ax = fig.add_subplot(grid[row, col])
                ax.imshow(images[col].reshape(data.size, data.size).numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if col == 0:
                    ax.set_ylabel(label)
        ax = fig.add_subplot(grid[:, 8:])
        bins = torch.linspace(0, 1, 26).numpy()
        ax.hist(data.curve_parameter(test).numpy(), bins=bins, density=True, color="k", alpha=0.4, label="data")
        ax.hist(data.curve_parameter(samples).numpy(), bins=bins, density=True, color="C3", alpha=0.5,
                label="samples")
        ax.set_xlabel("grey level")
        ax.legend(fontsize=8)
        fig.suptitle(title, fontsize=9)
    elif data.ambient_dim == 3:
        fig = plt.figure(figsize=(8, 3.8), constrained_layout=True)
        for i, (points, label) in enumerate(((test, "data"), (samples[: len(test)], title))):
            ax = fig.add_subplot(1, 2, i + 1, projection="3d")
            ax.scatter(*points.T.numpy(), s=1, c=points[:, 0].numpy(), cmap="viridis")
            ax.view_init(10, -70)
            ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), zlim=(low[2], high[2]))
            ax.set_title(label, fontsize=9)
    else:
        fig, ax = plt.subplots(figsize=(6.0, 4.4), constrained_layout=True)
        ax.scatter(*test.T.numpy(), s=2, color="k", alpha=0.4, label="data")
        ax.scatter(*samples.T.numpy(), s=2, color="C3", alpha=0.4, label="samples")
        ax.legend(markerscale=4)
        ax.set_title(title, fontsize=8)
        ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]))
        ax.set_aspect("equal")
    fig.savefig(path, dpi=110)
    plt.close(fig)
