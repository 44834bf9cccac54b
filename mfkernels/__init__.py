"""mfkernels: fused, exact kernels for manifold-learning normalizing flows, as torch ops.

Layers, each usable alone (only the first three are imported with the package):
    mfkernels.ops        drop-in fast ops (torch.ops.mfkernels.* with autograd, jvp, vmap, compile)
    mfkernels.reference  a plain pure-torch twin of every op: the oracle in tests and benchmarks
    mfkernels.flows      invertible layers built on the ops
    mfkernels.manifold   exact densities of injective generators (Gram log-determinants of their Jacobians)
    mfkernels.models     one thin model per method, one API (log_prob, sample, encode, decode, project, loss)
    mfkernels.training   the training loop (checkpoints, resume, progress, data-parallel)
    mfkernels.reproduce  the papers' experiments (`mfkernels reproduce NAME`)
    mfkernels.bench      speed against plain torch, nflows and torch.distributions (`mfkernels bench`)
    mfkernels.cli        the `mfkernels` command line
plus mfkernels.data (generated and bundled data sets), mfkernels.metrics (density and sample quality) and
mfkernels.cpu_memory (keep freed CPU memory in the process, so fresh op outputs do not page-fault).
The papers are listed in docs/papers.md.
"""

from . import _extension, flows, ops, reference
from ._version import __version__

__all__ = ["__version__", "build_info", "flows", "ops", "reference"]

build_info = _extension.build_info
