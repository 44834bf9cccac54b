"""mfkernels: fused, exact kernels for manifold-learning normalizing flows, as torch ops.

Layers, each usable alone:
    mfkernels.ops        drop-in fast ops (torch.ops.mfkernels.* with autograd, jvp, vmap, compile)
    mfkernels.reference  a plain pure-torch twin of every op: the oracle in tests and benchmarks
    mfkernels.flows      invertible layers built on the ops
"""

from . import _extension, flows, ops, reference
from ._version import __version__

__all__ = ["__version__", "build_info", "flows", "ops", "reference"]

build_info = _extension.build_info
