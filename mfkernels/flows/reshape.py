"""Squeeze (RealNVP, Dinh et al. 2017, sec. 3.6): trades spatial resolution for channels so that
channel-wise coupling masks reach every pixel. (B, C, H, W) -> (B, C f^2, H / f, W / f), each f x f
block becoming f^2 channels (channel c f^2 + i f + j holds pixel (f h + i, f w + j) of channel c,
torch's pixel_unshuffle order). A permutation: exact inverse and log-determinant 0.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import Transform


class Squeeze(Transform):
    def __init__(self, factor: int = 2):
        super().__init__()
        if factor < 1:
            raise ValueError(f"Squeeze: 'factor' must be >= 1, got {factor}")
        self.factor = factor

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"Squeeze: expected images (B, C, H, W) with H and W divisible by {self.factor}, "
                             f"got shape {tuple(x.shape)}")
        return F.pixel_unshuffle(x, self.factor), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if z.dim() != 4 or z.shape[1] % (self.factor**2):
            raise ValueError(f"Squeeze.inverse: expected (B, C * {self.factor**2}, H, W), got shape {tuple(z.shape)}")
        return F.pixel_shuffle(z, self.factor), z.new_zeros(z.shape[0])
