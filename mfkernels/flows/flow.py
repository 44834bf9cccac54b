"""A normalizing flow as a density: z = T(x) with a standard normal base of the event shape,
log p(x) = log N(T(x); 0, I) + log|det dT/dx| (change of variables), samples x = T^-1(z).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Transform


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I), summed over all non-batch dims: (B, ...) -> (B,)."""
    return -0.5 * z.square().flatten(1).sum(-1) - 0.5 * math.log(2 * math.pi) * math.prod(z.shape[1:])


class Flow(nn.Module):
    """`transform` maps data to noise; `base_shape` is the shape of one noise sample z = T(x)
    ((features,) for vectors; for images, the shape after any squeezes)."""

    def __init__(self, transform: Transform, base_shape: int | tuple[int, ...]):
        super().__init__()
        self.transform = transform
        self.base_shape = (base_shape,) if isinstance(base_shape, int) else tuple(base_shape)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        z, logabsdet = self.transform(x, context)
        return standard_normal_log_prob(z) + logabsdet

    forward = log_prob

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """n samples; temperature scales the base noise's standard deviation (Glow's reduced-temperature
        sampling). With a context, n samples are drawn for its batch (context (n, context_features))."""
        p = next(self.parameters(), None)
        device, dtype = (p.device, p.dtype) if p is not None else (None, None)
        z = torch.randn(n, *self.base_shape, generator=generator, device=device, dtype=dtype)
        x, _ = self.transform.inverse(z * temperature, context)
        return x
