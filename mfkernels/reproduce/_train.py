"""How every reproduction trains one model: `fit` into the model's own folder (rewritten on a rerun),
evenly spaced checkpoints, the model returned on the CPU in eval mode for the measurements."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..training import TrainConfig, fit


def train(model, data: Tensor, out_dir: str | Path, desc: str, *, steps: int, lr: float, seed: int,
          device: str | None, progress: bool, batch_size: int = 100, checkpoints: int = 2,
          weight_decay: float = 0.0):
    fit(model, data, TrainConfig(overwrite=True, steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                 seed=seed, out_dir=str(out_dir), checkpoint_every=max(steps // checkpoints, 1),
                                 device=device, progress=progress, desc=desc))
    return model.cpu().eval()
