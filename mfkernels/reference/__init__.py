"""Pure-torch reference twins of every mfkernels op, written for readability, not speed.

Tests use them as oracles and `mfkernels bench` as the autograd baseline. A twin takes the same
tensor arguments as its op and returns the same values (up to floating point) on well-posed input.
"""

from .coupling import affine_coupling
from .gram import gram_logdet
from .lowrank_gaussian import lowrank_gaussian_log_prob
from .nif_block import nif_block
from .rq_spline import rq_spline
from .tril_gaussian import tril_gaussian_log_prob

__all__ = [
    "affine_coupling",
    "gram_logdet",
    "lowrank_gaussian_log_prob",
    "nif_block",
    "rq_spline",
    "tril_gaussian_log_prob",
]
