"""mfkernels.flows: invertible layers built on mfkernels.ops, one interface for all:
`forward(x, context=None) -> (z, logabsdet)`, `inverse(z, context=None) -> (x, logabsdet)`.

So far: AffineCoupling, RQSplineCoupling (both with an MLP conditioner), ActNorm, LULinear,
Permutation, Sequential. Still to come from the coupling-flow issue: a conv conditioner for images.
"""

from .base import Sequential, Transform
from .conditioners import MLP
from .coupling import AffineCoupling, MaskedCoupling, RQSplineCoupling, alternating_mask
from .linear import LULinear
from .normalization import ActNorm
from .permutation import Permutation

__all__ = ["ActNorm", "AffineCoupling", "LULinear", "MLP", "MaskedCoupling", "Permutation", "RQSplineCoupling",
           "Sequential", "Transform", "alternating_mask"]
