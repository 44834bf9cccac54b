"""Per-coordinate reconstruction penalties of the manifold flows, averaged over the D coordinates.

- `huber`: paper 002 eq 2 and 4, r = (1/D) Σ_i H_δ(|x_i − x̂_i|), H_δ(e) = ½e² for e < δ, δ(e − ½δ) beyond:
  quadratic near the manifold, linear for far-off ("rejected") pixels, so outliers pull less;
- `mse`: (1/D) Σ_i (x_i − x̂_i)², the quadratic penalty of DNF / M-flow; Huber with δ → ∞ is half of it.

References:
    | Joint Manifold Learning and Density Estimation Using Normalizing Flows (Razavi et al., 2022)
    | https://arxiv.org/abs/2206.03293
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def huber(x: Tensor, reconstruction: Tensor, delta: float) -> Tensor:
    """(B,) mean Huber penalty per sample (torch's huber_loss is H_δ of eq 2)."""
    if not delta > 0:
        raise ValueError(f"huber: 'delta' must be > 0, got {delta}")
    return F.huber_loss(reconstruction, x, reduction="none", delta=delta).flatten(1).mean(1)


def mse(x: Tensor, reconstruction: Tensor) -> Tensor:
    """(B,) mean squared error per sample."""
    return (x - reconstruction).square().flatten(1).mean(1)


def penalty(kind: str, x: Tensor, reconstruction: Tensor, delta: float) -> Tensor:
    if kind == "huber":
        return huber(x, reconstruction, delta)
    if kind == "mse":
        return mse(x, reconstruction)
    raise ValueError(f"penalty: 'kind' must be 'huber' or 'mse', got {kind!r}")
