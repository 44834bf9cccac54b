"""mfkernels.flows: invertible layers built on mfkernels.ops, one interface for all:
`forward(x, context=None) -> (z, logabsdet)`, `inverse(z, context=None) -> (x, logabsdet)`.

So far: AffineCoupling (with an MLP conditioner), Permutation, Sequential. The rest of the layer set
of the coupling-flow issue (RQ spline coupling, ActNorm, LULinear, conv conditioner) is still to come.
"""

from .base import Sequential, Transform
from .conditioners import MLP
from .coupling import AffineCoupling, alternating_mask
from .permutation import Permutation

__all__ = ["AffineCoupling", "MLP", "Permutation", "Sequential", "Transform", "alternating_mask"]
