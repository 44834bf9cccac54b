"""Affine coupling layer (RealNVP / Glow; spread flows' volume-preserving variant, paper 003).

x is split by a binary mask into an identity part x_id and a transformed part x_tr;
a conditioner maps (x_id, context) to a shift t and log-scale parameter s, and x_tr goes through
`mfkernels.ops.affine_coupling` (y = x exp(a(s)) + t, a(s) by `mode`). The log-determinant is the
op's. With the zero-initialised MLP conditioner the layer starts as the identity.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .. import ops
from .base import Transform
from .conditioners import MLP


def alternating_mask(features: int, even: bool = True) -> Tensor:
    """1 where a feature is passed through unchanged (identity part), alternating over features."""
    mask = torch.arange(features) % 2 == (0 if even else 1)
    return mask


class AffineCoupling(Transform):
    """Affine coupling on vectors (B, features) with an MLP (or any) conditioner.

    Args:
        features: number of features.
        mask: bool tensor (features,), True for the identity part; default alternating.
        mode: "exp", "softclamp", "sigmoid" or "volume_preserving" (see ops.affine_coupling).
        clamp: softclamp's bound.
        context_features: size of the conditioning vector (0 for none).
        conditioner: factory (in_features, out_features, context_features) -> nn.Module; default MLP.
        coupling_fn: the transform, default `mfkernels.ops.affine_coupling`; passing
            `mfkernels.reference.affine_coupling` builds the identical pure-autograd twin layer.
    """

    def __init__(self, features: int, mask: Tensor | None = None, mode: str = "softclamp", clamp: float | None = 3.0,
                 context_features: int = 0, hidden_features: int = 64,
                 conditioner: Callable[[int, int, int], nn.Module] | None = None,
                 coupling_fn: Callable[..., tuple[Tensor, Tensor]] = ops.affine_coupling):
        super().__init__()
        self.coupling_fn = coupling_fn
        mask = alternating_mask(features) if mask is None else mask.to(torch.bool)
        if mask.shape != (features,) or mask.all() or not mask.any():
            raise ValueError(f"AffineCoupling: 'mask' must be a ({features},) bool tensor with both parts non-empty")
        self.register_buffer("identity_index", torch.nonzero(mask).flatten())
        self.register_buffer("transform_index", torch.nonzero(~mask).flatten())
        self.mode = mode
        self.clamp = clamp if mode == "softclamp" else None
        n_id, n_tr = len(self.identity_index), len(self.transform_index)
        make = conditioner or (lambda i, o, c: MLP(i, o, hidden_features=hidden_features, context_features=c))
        self.conditioner = make(n_id, 2 * n_tr, context_features)

    def _parameters_of(self, x_id: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        shift, scale = self.conditioner(x_id, context).chunk(2, dim=-1)
        return shift, scale

    def _transform(self, x: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        x_id = x.index_select(-1, self.identity_index)
        x_tr = x.index_select(-1, self.transform_index)
        shift, scale = self._parameters_of(x_id, context)
        y_tr, logabsdet = self.coupling_fn(x_tr, shift, scale, mode=self.mode, clamp=self.clamp, inverse=inverse)
        out = torch.empty_like(x)
        out[..., self.identity_index] = x_id
        out[..., self.transform_index] = y_tr
        return out, logabsdet

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(x, context, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(z, context, inverse=True)
