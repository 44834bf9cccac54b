"""mfkernels: fused, exact kernels for manifold-learning normalizing flows, as torch ops.

Layers, each usable alone:
    mfkernels.ops        drop-in fast ops (torch.ops.mfkernels.* with autograd, jvp, vmap, compile)
    mfkernels.reference  a plain pure-torch twin of every op: the oracle in tests and benchmarks
"""

from . import _extension
from ._version import __version__
from . import ops, reference

__all__ = ["__version__", "ops", "reference", "build_info"]

build_info = _extension.build_info
