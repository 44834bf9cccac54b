"""Coupling layers: affine (RealNVP / Glow; spread flows' volume-preserving variant, paper 003) and
rational-quadratic spline (neural spline flows, used by papers 000-004).

x is split by a binary mask into an identity part x_id and a transformed part x_tr; a conditioner
maps (x_id, context) to the elementwise transform's parameters, and x_tr goes through one fused op
(`mfkernels.ops.affine_coupling` or `mfkernels.ops.rq_spline`). The log-determinant is the op's,
summed over features for the spline. With the zero-initialised MLP conditioner the affine layer
starts as the identity.
"""

from __future__ import annotations

from abc import abstractmethod
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


class MaskedCoupling(Transform):
    """Mask split, conditioner and reassembly shared by the coupling layers; subclasses give the
    number of parameters per transformed feature and the elementwise transform."""

    params_per_feature: int

    def __init__(self, features: int, mask: Tensor | None, context_features: int, hidden_features: int,
                 conditioner: Callable[[int, int, int], nn.Module] | None):
        super().__init__()
        name = type(self).__name__
        mask = alternating_mask(features) if mask is None else mask.to(torch.bool)
        if mask.shape != (features,) or mask.all() or not mask.any():
            raise ValueError(f"{name}: 'mask' must be a ({features},) bool tensor with both parts non-empty")
        self.register_buffer("identity_index", torch.nonzero(mask).flatten())
        self.register_buffer("transform_index", torch.nonzero(~mask).flatten())
        n_id, n_tr = len(self.identity_index), len(self.transform_index)
        make = conditioner or (lambda i, o, c: MLP(i, o, hidden_features=hidden_features, context_features=c))
        self.conditioner = make(n_id, self.params_per_feature * n_tr, context_features)

    @abstractmethod
    def _elementwise(self, x_tr: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """(B, n_tr) and (B, n_tr * params_per_feature) -> (y_tr, logabsdet (B,))."""

    def _transform(self, x: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        x_id = x.index_select(-1, self.identity_index)
        x_tr = x.index_select(-1, self.transform_index)
        y_tr, logabsdet = self._elementwise(x_tr, self.conditioner(x_id, context), inverse)
        out = torch.empty_like(x)
        out[..., self.identity_index] = x_id
        out[..., self.transform_index] = y_tr
        return out, logabsdet

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(x, context, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(z, context, inverse=True)


class AffineCoupling(MaskedCoupling):
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

    params_per_feature = 2

    def __init__(self, features: int, mask: Tensor | None = None, mode: str = "softclamp", clamp: float | None = 3.0,
                 context_features: int = 0, hidden_features: int = 64,
                 conditioner: Callable[[int, int, int], nn.Module] | None = None,
                 coupling_fn: Callable[..., tuple[Tensor, Tensor]] = ops.affine_coupling):
        super().__init__(features, mask, context_features, hidden_features, conditioner)
        self.coupling_fn = coupling_fn
        self.mode = mode
        self.clamp = clamp if mode == "softclamp" else None

    def _elementwise(self, x_tr: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        shift, scale = params.chunk(2, dim=-1)
        return self.coupling_fn(x_tr, shift, scale, mode=self.mode, clamp=self.clamp, inverse=inverse)


class RQSplineCoupling(MaskedCoupling):
    """Rational-quadratic spline coupling (Durkin et al. 2019) with linear tails outside
    [-tail_bound, tail_bound]: per transformed feature the conditioner gives num_bins width, num_bins
    height and num_bins - 1 derivative logits for `mfkernels.ops.rq_spline`.

    `spline_fn` defaults to `mfkernels.ops.rq_spline`; `mfkernels.reference.rq_spline` or nflows'
    `unconstrained_rational_quadratic_spline` build the same layer on other implementations.
    """

    def __init__(self, features: int, num_bins: int = 8, tail_bound: float = 3.0, mask: Tensor | None = None,
                 context_features: int = 0, hidden_features: int = 64,
                 conditioner: Callable[[int, int, int], nn.Module] | None = None,
                 spline_fn: Callable[..., tuple[Tensor, Tensor]] = ops.rq_spline):
        if num_bins < 1:
            raise ValueError(f"RQSplineCoupling: 'num_bins' must be >= 1, got {num_bins}")
        self.params_per_feature = 3 * num_bins - 1
        super().__init__(features, mask, context_features, hidden_features, conditioner)
        self.num_bins = num_bins
        self.tail_bound = float(tail_bound)
        self.spline_fn = spline_fn

    def _elementwise(self, x_tr: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        K = self.num_bins
        params = params.reshape(*x_tr.shape, 3 * K - 1)
        widths, heights, derivatives = params[..., :K], params[..., K:2 * K], params[..., 2 * K:]
        y, logabsdet = self.spline_fn(x_tr, widths, heights, derivatives, inverse=inverse, tails="linear",
                                      tail_bound=self.tail_bound)
        return y, logabsdet.sum(-1)
