"""Multi-scale image flow (RealNVP sec. 3.6 / Glow, Kingma & Dhariwal 2018, fig. 2) behind the flat
vector interface the models use: x (B, C·H·W) → z (B, C·H·W).

Level l: squeeze (×2), `steps` × [ActNorm, invertible 1×1 convolution (LULinear on channels), affine
coupling with a ConvNet conditioner on alternating channel halves]; after every level but the last,
half of the channels are factored out (the "split") and go straight to z. The flat z lists the last
level's coordinates first, then the factored-out ones from the deepest split to the first, so the
first d coordinates (a pixel-rejection or M-flow model's u) are the most processed ones and the early
splits carry the off-manifold v. The log-determinant is the sum of the layers'; squeeze and split
are permutations.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Sequential, Transform
from .conditioners import ConvNet
from .coupling import AffineCoupling, alternating_mask
from .linear import LULinear
from .normalization import ActNorm
from .reshape import Squeeze


def glow_step(shape: tuple[int, int, int], hidden_channels: int, mask_even: bool, seed: int,
              context_features: int = 0) -> Transform:
    """One Glow step on (C, H, W) images: ActNorm, 1×1 convolution, affine coupling."""
    channels = shape[0]
    return Sequential(
        ActNorm(channels),
        LULinear(channels, seed=seed, feature_dim=1),
        AffineCoupling(shape, mask=alternating_mask(channels, even=mask_even), context_features=context_features,
                       conditioner=lambda i, o, c: ConvNet(i, o, hidden_channels, context_features=c)),
    )


class MultiScaleFlow(Transform):
    """Args: image_shape (C, H, W) with H, W divisible by 2**levels; levels ≥ 1; steps per level;
    hidden_channels of the conditioners; seed for the 1×1 convolutions' initialisation."""

    def __init__(self, image_shape: tuple[int, int, int], levels: int = 2, steps: int = 4, hidden_channels: int = 64,
                 seed: int = 0, context_features: int = 0):
        super().__init__()
        C, H, W = (int(s) for s in image_shape)
        if levels < 1 or steps < 1 or H % 2**levels or W % 2**levels or min(C, H, W) < 1:
            raise ValueError(f"MultiScaleFlow: need levels >= 1, steps >= 1 and H, W divisible by 2**levels, got "
                             f"image_shape={tuple(image_shape)}, levels={levels}, steps={steps}")
        self.image_shape = (C, H, W)
        self.features = C * H * W
        self.levels = nn.ModuleList()
        self.kept_shapes: list[tuple[int, int, int]] = []  # each level's output before its split
        for level in range(levels):
            C, H, W = C * 4, H // 2, W // 2
            self.levels.append(Sequential(Squeeze(2), *[
                glow_step((C, H, W), hidden_channels, step % 2 == 0, seed + 100 * level + step, context_features)
                for step in range(steps)]))
            self.kept_shapes.append((C, H, W))
            if level < levels - 1:
                C //= 2  # the other half is factored out

    def _check(self, x: Tensor, name: str) -> None:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"MultiScaleFlow: expected '{name}' of shape (B, {self.features}) (flattened "
                             f"{self.image_shape} images), got {tuple(x.shape)}")

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(x, "x")
        h, total, factored = x.reshape(-1, *self.image_shape), x.new_zeros(x.shape[0]), []
        for level, flow in enumerate(self.levels):
            h, logabsdet = flow(h, context)
            total = total + logabsdet
            if level < len(self.levels) - 1:
                h, out = h.chunk(2, dim=1)
                factored.append(out.flatten(1))
        return torch.cat([h.flatten(1), *reversed(factored)], dim=1), total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(z, "z")
        last = self.kept_shapes[-1]
        sizes = [math.prod(last)] + [math.prod(s) // 2 for s in reversed(self.kept_shapes[:-1])]
        pieces = list(z.split(sizes, dim=1))
        h, total = pieces[0].reshape(-1, *last), z.new_zeros(z.shape[0])
        for level in reversed(range(len(self.levels))):
            if level < len(self.levels) - 1:
                C, H, W = self.kept_shapes[level]
                out = pieces[len(self.levels) - 1 - level].reshape(-1, C // 2, H, W)
                h = torch.cat([h, out], dim=1)
            h, logabsdet = self.levels[level].inverse(h, context)
            total = total + logabsdet
        return h.flatten(1), total
