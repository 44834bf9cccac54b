"""mfkernels.bench: the speed of each layer against the plain-torch code a user would write, measured in
one process (same-run ratios of medians, interleaved), as `mfkernels bench` prints them.

- `ops`: every op and its reference twin (and nflows / torch.distributions where they have it), forward
  and forward + backward, with roofline columns (bytes moved, GB/s, a same-size copy's GB/s);
- `flows`: the training step of an 8-layer spline flow against the same flow built from nflows' layers;
- `models`: model-level comparisons (M-flow's exact density, DNF steps, spread flow, NIF, pixel rejection);
- `gram_timing`: the exact Gram density of a model against per-point autograd Jacobians, shared with
  the reproductions;
- `profile`: where each op's CPU forward + backward goes (its kernels alone, the rest of the call, the
  first touch of fresh outputs, a copy of its bytes);
- `exact_training`: training by the exact manifold likelihood (the exact and the stochastic log-volume
  step against plain torch through nflows' layers).
"""

from . import exact_training, flows, gram_timing, models, ops, profile
from .ops import DTYPES, format_table, forward_backward, roofline, run, write_json

__all__ = ["DTYPES", "exact_training", "flows", "format_table", "forward_backward", "gram_timing", "models", "ops",
           "profile", "roofline", "run", "write_json"]
