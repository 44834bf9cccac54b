"""What `mfkernels train / eval / sample / reproduce` do (the argument parsing is in cli.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from .. import metrics
from ..data import make_dataset, sample_points
from ..models import MODELS, build_model
from ..training import TrainConfig, fit, model_from_checkpoint

TEST_SEED_OFFSET = 1_000_003  # test data: same data set, an independent seed


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """["noise_std=0.1", "schedule=joint"] -> {"noise_std": 0.1, "schedule": "joint"} (JSON values,
    else strings)."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def train(model_name: str, data: str, n: int, data_options: dict, model_options: dict, train_options: dict) -> dict:
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; expected one of {sorted(MODELS)}")
    dataset = make_dataset(data, **data_options)
    seed = train_options.get("seed", 0)
    x = sample_points(dataset, n, torch.Generator().manual_seed(seed))
    model_options = {"features": dataset.ambient_dim, "manifold_dim": dataset.manifold_dim, "seed": seed,
                     **model_options}
    model = build_model(model_name, **model_options)
    metadata = {"data": data, "data_options": data_options, "n": n, "seed": seed}
    return fit(model, x, TrainConfig(**train_options), metadata=metadata)


def _dataset_of(payload: dict):
    meta = payload.get("metadata") or {}
    if "data" not in meta:
        raise ValueError("this checkpoint does not say which data set it was trained on (no metadata)")
    return make_dataset(meta["data"], **meta.get("data_options", {})), meta


@torch.no_grad()
def evaluate(checkpoint: str, n: int = 2000) -> dict[str, Any]:
    """Test metrics of a trained model on fresh data of the set it was trained on."""
    if n < 1:
        raise ValueError(f"--n must be >= 1 test points, got {n}")
    model, payload = model_from_checkpoint(checkpoint)
    dataset, meta = _dataset_of(payload)
    x = sample_points(dataset, n, torch.Generator().manual_seed(meta.get("seed", 0) + TEST_SEED_OFFSET))
    log_p = model.log_prob(x)
    finite = torch.isfinite(log_p)
    report: dict[str, Any] = {
        "model": payload["model_name"], "step": payload["step"], "data": meta["data"], "points": n,
        "test_log_likelihood": float(log_p[finite].mean()) if finite.any() else -math.inf,
        "test_finite_fraction": float(finite.float().mean()),
        "true_test_log_likelihood": float(dataset.log_prob(x).mean()) if hasattr(dataset, "log_prob") else None,
        "reconstruction_error": float((x - model.project(x)).norm(dim=1).mean()),
    }
    samples = model.sample(n, generator=torch.Generator().manual_seed(0))
    if hasattr(dataset, "distance"):
        report["sample_distance"] = float(dataset.distance(samples).mean())
    if hasattr(dataset, "speed"):
        report["density_along_manifold"] = metrics.density_along_curve(model.log_prob, dataset)
    return report


@torch.no_grad()
def sample(checkpoint: str, n: int, out: str, temperature: float = 1.0, seed: int = 0) -> Path:
    """n samples to a .pt tensor file or a .png scatter plot (first two or three coordinates)."""
    if n < 1:
        raise ValueError(f"-n must be >= 1 samples, got {n}")
    if Path(out).suffix not in (".pt", ".png") or Path(out).is_dir():
        raise ValueError(f"--out must be a file path ending in .pt or .png, got {out!r}")
    model, payload = model_from_checkpoint(checkpoint)
    x = model.sample(n, temperature=temperature, generator=torch.Generator().manual_seed(seed))
    path = Path(out)
    if path.suffix == ".pt":
        torch.save(x, path)
    elif path.suffix == ".png":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(5, 5))
        if x.shape[1] >= 3:
            ax = fig.add_subplot(projection="3d")
            ax.scatter(*x[:, :3].T, s=1)
        else:
            ax = fig.add_subplot()
            ax.scatter(x[:, 0], x[:, 1] if x.shape[1] > 1 else torch.zeros(n), s=1)
            ax.set_aspect("equal")
        ax.set_title(f"{payload['model_name']}: {n} samples, T = {temperature}")
        fig.savefig(path, dpi=120)
        plt.close(fig)
    else:
        raise ValueError(f"--out must end in .pt or .png, got {out!r}")
    return path
