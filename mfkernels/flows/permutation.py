"""Fixed feature (or image channel) permutations between coupling layers (log-determinant 0)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Transform


class Permutation(Transform):
    """Permutes one dimension: "reverse", "random" (seeded) or an explicit index tensor. `dim` is -1
    for vectors (B, features), 1 for the channels of images (B, C, H, W)."""

    def __init__(self, features: int, kind: str | Tensor = "reverse", seed: int = 0, dim: int = -1):
        super().__init__()
        self.dim = dim
        if isinstance(kind, Tensor):
            perm = kind.long()
        elif kind == "reverse":
            perm = torch.arange(features - 1, -1, -1)
        elif kind == "random":
            perm = torch.randperm(features, generator=torch.Generator().manual_seed(seed))
        else:
            raise ValueError(f"Permutation: 'kind' must be 'reverse', 'random' or an index tensor, got {kind!r}")
        if sorted(perm.tolist()) != list(range(features)):
            raise ValueError(f"Permutation: {perm.tolist()} is not a permutation of range({features})")
        self.register_buffer("perm", perm)
        self.register_buffer("inverse_perm", torch.argsort(perm))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.index_select(self.dim, self.perm), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z.index_select(self.dim, self.inverse_perm), z.new_zeros(z.shape[0])
