"""mfkernels.flows: invertible layers built on mfkernels.ops, one interface for all:
`forward(x, context=None) -> (z, logabsdet)`, `inverse(z, context=None) -> (x, logabsdet)`.

Layers: AffineCoupling and RQSplineCoupling (vectors with an MLP conditioner, or images (C, H, W)
with channel masks and a ConvNet conditioner), ActNorm, LULinear, Permutation, Squeeze and
ElementwiseRQSpline; GaussianNIF (the dimension-changing noisy injective layer, paper 001) and
StochasticCoupling; MultiScaleFlow, the multi-scale Glow image flow (squeeze, ActNorm, 1x1
convolution, conv couplings, split) behind a flat-vector interface. Sequential composes layers, Flow
turns a transform into a density with a standard normal base, and `rq_spline_flow` /
`realnvp_flow` build the usual stacks in one call.

References:
    | Normalizing Flows Across Dimensions (Cunningham et al., 2020)
    | https://arxiv.org/abs/2006.13070
"""

from .base import Sequential, Transform
from .builders import realnvp_flow, rq_spline_flow
from .conditioners import MLP, ConvNet
from .conformal import ChartConformalMaps
from .coupling import AffineCoupling, MaskedCoupling, RQSplineCoupling, alternating_mask
from .elementwise import ElementwiseRQSpline
from .flow import Flow, standard_normal_log_prob
from .gaussian_nif import GaussianNIF
from .linear import LULinear
from .multiscale import MultiScaleFlow, glow_step
from .normalization import ActNorm
from .permutation import Permutation
from .reshape import Squeeze
from .stochastic_coupling import StochasticCoupling

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "ChartConformalMaps",
    "ConvNet",
    "ElementwiseRQSpline",
    "Flow",
    "GaussianNIF",
    "LULinear",
    "MLP",
    "MaskedCoupling",
    "MultiScaleFlow",
    "Permutation",
    "RQSplineCoupling",
    "Sequential",
    "Squeeze",
    "StochasticCoupling",
    "Transform",
    "alternating_mask",
    "glow_step",
    "realnvp_flow",
    "rq_spline_flow",
    "standard_normal_log_prob",
]
