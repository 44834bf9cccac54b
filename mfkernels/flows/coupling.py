"""Coupling layers: affine (RealNVP / Glow; spread flows' volume-preserving variant, paper 003) and
rational-quadratic spline (neural spline flows, used by papers 000-004), on vectors (B, features)
or images (B, C, H, W).

x is split by a binary mask into an identity part x_id and a transformed part x_tr (over features
for vectors, over channels for images, as in RealNVP's channel-wise masks after a squeeze); a
conditioner (MLP for vectors, ConvNet for images) maps (x_id, context) to the elementwise
transform's parameters, and x_tr goes through one fused op (`mfkernels.ops.affine_coupling` or
`mfkernels.ops.rq_spline`). The log-determinant is the op's, summed over all non-batch dims for the
spline. With the zero-initialised conditioners the affine layer starts as the identity.

References:
    | Spread Flows for Manifold Modelling (Zhang et al., 2021)
    | https://arxiv.org/abs/2109.14216
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Callable

import torch
from torch import Tensor, nn

from .. import ops
from .base import Transform
from .conditioners import MLP, ConvNet


def _event_shape(cls: str, features: int | tuple[int, ...]) -> tuple[int, ...]:
    shape = (int(features),) if isinstance(features, int) else tuple(int(f) for f in features)
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ValueError(f"{cls}: 'features' must be an int (vectors) or (C, H, W) (images), got {features!r}")
    return shape


def alternating_mask(features: int, even: bool = True) -> Tensor:
    """1 where a feature is passed through unchanged (identity part), alternating over features."""
    mask = torch.arange(features) % 2 == (0 if even else 1)
    return mask


class MaskedCoupling(Transform):
    """Mask split, conditioner and reassembly shared by the coupling layers; subclasses give the
    number of parameters per transformed feature and the elementwise transform.

    `features` is an int for vectors (B, features) or (C, H, W) for images, whose mask is over
    channels. The conditioner maps x_id (B, n_id[, H, W]) to (B, params_per_feature * n_tr[, H, W]).
    """

    params_per_feature: int

    def __init__(self, features: int | tuple[int, ...], mask: Tensor | None, context_features: int,
                 hidden_features: int, conditioner: Callable[[int, int, int], nn.Module] | None):
        super().__init__()
        name = type(self).__name__
        self.event_shape = _event_shape(name, features)
        n = self.event_shape[0]
        mask = alternating_mask(n) if mask is None else mask.to(torch.bool)
        if mask.shape != (n,) or mask.all() or not mask.any():
            what = "features" if len(self.event_shape) == 1 else "channels"
            raise ValueError(f"{name}: 'mask' must be a ({n},) bool tensor over the {what}, with both parts non-empty")
        self.register_buffer("identity_index", torch.nonzero(mask).flatten())
        self.register_buffer("transform_index", torch.nonzero(~mask).flatten())
        n_id, n_tr = len(self.identity_index), len(self.transform_index)
        # An alternating mask over an even count (the default) splits x into two views and merges with
        # one stack, whose backwards are one stack and views: index_select / index_put cost a zero fill
        # and a scatter each way, a visible share of a wide flow's backward.
        self.identity_slot: int | None = None  # where x_id sits in each (even, odd) pair, if alternating
        if n % 2 == 0 and torch.equal(mask, alternating_mask(n, even=bool(mask[0]))):
            self.identity_slot = 0 if bool(mask[0]) else 1
        net = MLP if len(self.event_shape) == 1 else ConvNet
        make = conditioner or (lambda i, o, c: net(i, o, hidden_features, context_features=c))
        self.conditioner = make(n_id, self.params_per_feature * n_tr, context_features)

    @property
    def split_dim(self) -> int:
        """The dim the mask splits (features of a vector, channels of an image), counted from the end."""
        return -len(self.event_shape)

    def _per_feature(self, params: Tensor) -> Tensor:
        """Conditioner output -> x_tr's shape + (params_per_feature,): feature j's parameters are the
        params_per_feature consecutive outputs from j * params_per_feature on (along split_dim)."""
        d = self.split_dim
        return params.unflatten(d, (-1, self.params_per_feature)).movedim(d, -1)

    @abstractmethod
    def _elementwise(self, x_tr: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """x_tr (B, n_tr[, H, W]) and the conditioner's output -> (y_tr, logabsdet (B,))."""

    def _transform(self, x: Tensor, context: Tensor | None, inverse: bool,
                   params: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        d = self.split_dim
        if x.dim() < -d or tuple(x.shape[d:]) != self.event_shape:
            raise ValueError(f"{type(self).__name__}: expected inputs (B, {', '.join(map(str, self.event_shape))}), "
                             f"got {tuple(x.shape)}")
        if self.identity_slot is not None:
            pairs = x.unflatten(d, (-1, 2)).unbind(d)
            x_id, x_tr = pairs[self.identity_slot], pairs[1 - self.identity_slot]
        else:
            x_id = x.index_select(d, self.identity_index)
            x_tr = x.index_select(d, self.transform_index)
        if params is None:
            params = self.conditioner(x_id, context)
        y_tr, logabsdet = self._elementwise(x_tr, params, inverse)
        if self.identity_slot is not None:
            pair = (x_id, y_tr) if self.identity_slot == 0 else (y_tr, x_id)
            return torch.stack(pair, d).flatten(d - 1, d), logabsdet, params
        trailing = (slice(None),) * (len(self.event_shape) - 1)
        out = torch.empty_like(x)
        out[(Ellipsis, self.identity_index, *trailing)] = x_id
        out[(Ellipsis, self.transform_index, *trailing)] = y_tr
        return out, logabsdet, params

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(x, context, inverse=False)[:2]

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._transform(z, context, inverse=True)[:2]

    def forward_with_params(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """forward, plus the conditioner's output, for a later `inverse_with_params` on a point with
        the same identity part (the conditioner depends on nothing else, so it need not run again)."""
        return self._transform(x, context, inverse=False)

    def inverse_with_params(self, z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """inverse with the conditioner output `params` of a point whose identity part equals z's."""
        return self._transform(z, None, inverse=True, params=params)[:2]


class AffineCoupling(MaskedCoupling):
    """Affine coupling on vectors (B, features) or images (B, C, H, W), MLP or ConvNet conditioner.

    Args:
        features: number of features, or (C, H, W) for images.
        mask: bool tensor (features,) or (C,), True for the identity part; default alternating.
        mode: "exp", "softclamp", "sigmoid" or "volume_preserving" (see ops.affine_coupling).
        clamp: softclamp's bound.
        context_features: size of the conditioning vector (0 for none).
        conditioner: factory (in_features, out_features, context_features) -> nn.Module; default MLP.
        coupling_fn: the transform, default `mfkernels.ops.affine_coupling`; passing
            `mfkernels.reference.affine_coupling` builds the identical pure-autograd twin layer.
    """

    params_per_feature = 2

    def __init__(
        self,
        features: int | tuple[int, ...],
        mask: Tensor | None = None,
        mode: str = "softclamp",
        clamp: float | None = 3.0,
        context_features: int = 0,
        hidden_features: int = 64,
        conditioner: Callable[[int, int, int], nn.Module] | None = None,
        coupling_fn: Callable[..., tuple[Tensor, Tensor]] = ops.affine_coupling,
    ):
        super().__init__(features, mask, context_features, hidden_features, conditioner)
        self.coupling_fn = coupling_fn
        self.mode = mode
        self.clamp = clamp if mode == "softclamp" else None

    def _elementwise(self, x_tr: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        shift, scale = params.chunk(2, dim=self.split_dim)  # all shifts, then all scales
        return self.coupling_fn(x_tr, shift, scale, mode=self.mode, clamp=self.clamp, inverse=inverse)


class RQSplineCoupling(MaskedCoupling):
    """Rational-quadratic spline coupling (Durkan et al. 2019) with linear tails outside
    [-tail_bound, tail_bound], on vectors or (features=(C, H, W)) images: per transformed feature
    (channel and position for images) the conditioner gives num_bins width, num_bins height and
    num_bins - 1 derivative logits for `mfkernels.ops.rq_spline`.

    `spline_fn` defaults to `mfkernels.ops.rq_spline`; `mfkernels.reference.rq_spline` or nflows'
    `unconstrained_rational_quadratic_spline` build the same layer on other implementations.
    """

    def __init__(
        self,
        features: int | tuple[int, ...],
        num_bins: int = 8,
        tail_bound: float = 3.0,
        mask: Tensor | None = None,
        context_features: int = 0,
        hidden_features: int = 64,
        conditioner: Callable[[int, int, int], nn.Module] | None = None,
        spline_fn: Callable[..., tuple[Tensor, Tensor]] = ops.rq_spline,
    ):
        if num_bins < 1:
            raise ValueError(f"RQSplineCoupling: 'num_bins' must be >= 1, got {num_bins}")
        self.params_per_feature = 3 * num_bins - 1
        super().__init__(features, mask, context_features, hidden_features, conditioner)
        self.num_bins = num_bins
        self.tail_bound = float(tail_bound)
        self.spline_fn = spline_fn

    def _elementwise(self, x_tr: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        K = self.num_bins
        params = self._per_feature(params)
        widths, heights, derivatives = params[..., :K], params[..., K:2 * K], params[..., 2 * K:]
        y, logabsdet = self.spline_fn(x_tr, widths, heights, derivatives, inverse=inverse, tails="linear",
                                      tail_bound=self.tail_bound)
        return y, logabsdet.flatten(1).sum(-1)
