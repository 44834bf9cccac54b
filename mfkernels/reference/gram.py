"""Reference twin of `mfkernels.ops.gram_logdet`: 0.5 * log det(J^T J) through dense autograd.

This is how M-flow's injective-flow density term det(J^T J)^(-1/2) is usually computed (paper 000),
the baseline the fused op is measured against.

References:
    | Denoising Normalizing Flow (Horvat and Pfister, NeurIPS 2021)
    | docs/papers.md, paper 000
"""

from __future__ import annotations

import torch
from torch import Tensor


def gram_logdet(J: Tensor) -> Tensor:
    """0.5 * log det(J^T J) for J of shape (..., D, d); -inf where J^T J has non-positive determinant.

    Unlike the op it has no singularity tolerance: a numerically singular J gives whatever slogdet
    makes of rounding noise.
    """
    sign, logabsdet = torch.linalg.slogdet(J.mT @ J)
    return torch.where(sign > 0, 0.5 * logabsdet, torch.full_like(logabsdet, float("-inf")))
