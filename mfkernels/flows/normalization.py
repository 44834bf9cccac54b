"""ActNorm (Glow, Kingma & Dhariwal 2018): a per-feature affine map with data-dependent init.

y = x * exp(s) + t with one (s, t) per feature (per channel for images, shared over positions),
computed by `mfkernels.ops.affine_coupling` in "exp" mode with broadcast parameters, so the
log-determinant sums s over every position. The first forward pass in training mode sets s and t so
that the batch comes out with zero mean and unit variance per feature.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import ops
from .base import Transform


class ActNorm(Transform):
    """Args: features (channels for images); `feature_dim` is the dimension holding them (1 for
    (B, C, H, W) images and for (B, features) vectors)."""

    def __init__(self, features: int, feature_dim: int = 1, eps: float = 1e-6):
        super().__init__()
        self.features, self.feature_dim, self.eps = features, feature_dim, eps
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.shift = nn.Parameter(torch.zeros(features))
        # The buffer makes checkpoints remember the initialisation; forward branches on the Python
        # flag mirrored from it, which torch.compile can guard on without a graph break.
        self.register_buffer("initialized", torch.tensor(False))
        self._needs_init = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._needs_init = not bool(self.initialized)

    def _broadcast(self, p: Tensor, x: Tensor) -> Tensor:
        shape = [1] * x.dim()
        shape[self.feature_dim] = self.features
        return p.view(shape)

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        dims = [d for d in range(x.dim()) if d != self.feature_dim]
        mean = x.mean(dim=dims)
        std = x.std(dim=dims, unbiased=False)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.shift.copy_(-mean * torch.exp(self.log_scale))
        self.initialized.fill_(True)
        self._needs_init = False

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if x.shape[self.feature_dim] != self.features:
            raise ValueError(
                f"ActNorm: expected {self.features} features in dim {self.feature_dim}, got {tuple(x.shape)}"
            )
        if self.training and self._needs_init and x.shape[0] > 1:
            self._initialize(x)
        return ops.affine_coupling(x, self._broadcast(self.shift, x), self._broadcast(self.log_scale, x), mode="exp")

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return ops.affine_coupling(z, self._broadcast(self.shift, z), self._broadcast(self.log_scale, z), mode="exp",
                                   inverse=True)
