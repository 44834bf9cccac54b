"""mfkernels.ops: the public home of every op. Each is a fused, exact torch op with analytic
backward (and tangent) kernels, a pure-torch twin in `mfkernels.reference`, and a registry entry
(`all_ops()`) naming its twin and benchmark shapes."""

from ._autocast import register_autocast_kernels as _register_autocast_kernels
from ._checks import cannot_read_values
from ._registry import OpSpec, all_ops, get_op
from .coupling import affine_coupling
from .gram import gram_logdet
from .lowrank_gaussian import lowrank_gaussian_log_prob
from .nif_block import nif_block, nif_sample_posterior
from .rq_spline import rq_spline
from .spectrum import intrinsic_dimension, spectrum
from .tril_gaussian import tril_gaussian_log_prob

_register_autocast_kernels(
    sorted({name for spec in all_ops().values() for name in spec.primitives if not name.startswith("_")}))

__all__ = [
    "OpSpec",
    "affine_coupling",
    "all_ops",
    "cannot_read_values",
    "get_op",
    "gram_logdet",
    "intrinsic_dimension",
    "lowrank_gaussian_log_prob",
    "nif_block",
    "nif_sample_posterior",
    "rq_spline",
    "spectrum",
    "tril_gaussian_log_prob",
]
