"""Spectrum of a spread-flow prior covariance A A^T (paper 003, sec. 3: intrinsic dimension = number
of non-zero eigenvalues of A A^T; dimension reduction z -> z E with the top eigenvectors E).

A A^T's eigenpairs come from the SVD of the lower-triangular A (eigenvalues = squared singular values,
eigenvectors = left singular vectors), which keeps the small eigenvalues that decide the dimension
accurate: forming A A^T first would square A's condition number. A thin wrapper over ATen's SVD (no
custom kernel: the work is LAPACK's); differentiable wherever the eigenvalues are distinct.

References:
    | Spread Flows for Manifold Modelling (Zhang et al., 2021)
    | https://arxiv.org/abs/2109.14216
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._autocast import float32_under_autocast
from ._checks import check_tensor

_SPECTRUM = "mfkernels.ops.spectrum"
_INDIM = "mfkernels.ops.intrinsic_dimension"


def _check_square(op: str, A: Tensor) -> None:
    check_tensor(op, "A", A, min_dim=2)
    if A.shape[-1] != A.shape[-2] or A.shape[-1] == 0:
        raise ValueError(f"{op}: argument 'A' must be square (..., D, D) with D >= 1, got {tuple(A.shape)}")


@float32_under_autocast
def spectrum(A: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues of A A^T in descending order (..., D) and the eigenvectors as columns (..., D, D),
    for lower-triangular A (..., D, D); only the lower triangle of A is read.

    Each eigenvector's sign is fixed (its largest-magnitude entry is positive): an SVD may return
    either sign, and CPU LAPACK and CUDA's solver do differ, which would flip the coordinates of
    every projection onto these vectors (SpreadFlow.encode) from one device to the other."""
    _check_square(_SPECTRUM, A)
    L = torch.tril(A)
    finite = torch.isfinite(L).all(-1).all(-1)  # NaN policy: a non-finite matrix gives NaN eigen-pairs
    U, S, _ = torch.linalg.svd(torch.where(finite[..., None, None], L, torch.zeros_like(L)))
    peak = torch.gather(U, -2, U.abs().argmax(dim=-2, keepdim=True))
    U = U * torch.where(peak < 0, -1.0, 1.0).to(U.dtype)
    nan = torch.tensor(float("nan"), dtype=L.dtype, device=L.device)
    return torch.where(finite[..., None], S.square(), nan), torch.where(finite[..., None, None], U, nan)


@float32_under_autocast
def intrinsic_dimension(A: Tensor, rel_threshold: float | None = None, min_gap: float = 10.0) -> Tensor:
    """Number of eigenvalues of A A^T that count as non-zero, per matrix (int64, shape A.shape[:-2]).

    rel_threshold=None: the count above the largest gap in log-eigenvalue, i.e. the largest ratio
    lambda_i / lambda_{i+1}; if no ratio reaches `min_gap` the spectrum has no gap and the count is D
    (eigenvalues below max * eps(dtype)^2, zero to working precision, are lifted to that floor so
    exact zeros give a finite gap). With a float: the count of eigenvalues above rel_threshold * max.
    A zero matrix has dimension 0.
    """
    _check_square(_INDIM, A)
    if not float(min_gap) > 1.0:
        raise ValueError(f"{_INDIM}: argument 'min_gap' must be a ratio > 1, got {min_gap!r}")
    if rel_threshold is not None and not 0.0 <= float(rel_threshold) < 1.0:
        raise ValueError(f"{_INDIM}: argument 'rel_threshold' must be None or a float in [0, 1), got {rel_threshold!r}")
    with torch.no_grad():
        if not bool(torch.isfinite(torch.tril(A)).all()):
            raise ValueError(f"{_INDIM}: argument 'A' holds NaN or inf; a dimension count of it has no meaning")
        eigenvalues = torch.linalg.svdvals(torch.tril(A)).square()
        top = eigenvalues[..., :1]
        if rel_threshold is not None:
            return (eigenvalues > rel_threshold * top).sum(-1)
        if eigenvalues.shape[-1] == 1:
            return (top[..., 0] > 0).long()
        floor = top * torch.finfo(A.dtype).eps ** 2
        log_eig = torch.log(torch.maximum(eigenvalues, floor))
        gaps = log_eig[..., :-1] - log_eig[..., 1:]
        largest, at = gaps.max(-1)
        full = torch.full_like(at, eigenvalues.shape[-1])
        count = torch.where(largest >= torch.log(torch.tensor(float(min_gap))), at + 1, full)
        return torch.where(top[..., 0] > 0, count, torch.zeros_like(count))  # A = 0: no direction at all
