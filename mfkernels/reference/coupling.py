"""Reference twin of `mfkernels.ops.affine_coupling`, written plainly with autograd.

    forward:  y = x * exp(a) + t,      logabsdet = sum of a over the non-batch dims
    inverse:  x = (y - t) * exp(-a),   logabsdet = -sum of a
a = s (exp), c tanh(s / c) (softclamp), log sigmoid(s + 2) (sigmoid), s - mean(s) (volume_preserving,
paper 003's volume-preserving coupling, logabsdet 0).

References:
    | Spread Flows for Manifold Modelling (Zhang et al., 2021)
    | https://arxiv.org/abs/2109.14216
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def affine_coupling(
    x: Tensor, shift: Tensor, scale: Tensor, *, mode: str = "exp", clamp: float | None = None,
    inverse: bool = False,
) -> tuple[Tensor, Tensor]:
    shape = torch.broadcast_shapes(x.shape, shift.shape, scale.shape)
    per_sample = math.prod(shape[1:])  # explicit, so that a batch of 0 still has a known row length
    s = scale.expand(shape)
    if mode == "exp":
        a = s
    elif mode == "softclamp":
        a = clamp * torch.tanh(s / clamp)
    elif mode == "sigmoid":
        a = F.logsigmoid(s + 2)
    elif mode == "volume_preserving":
        a = s - s.reshape(shape[0], per_sample).mean(1).reshape((shape[0],) + (1,) * (len(shape) - 1))
    else:
        raise ValueError(f"unknown mode {mode!r}")
    y = (x - shift) * torch.exp(-a) if inverse else x * torch.exp(a) + shift
    logabsdet = a.reshape(shape[0], per_sample).sum(1)
    if mode == "volume_preserving":
        logabsdet = torch.zeros_like(logabsdet)
    return y, (-logabsdet if inverse else logabsdet)
