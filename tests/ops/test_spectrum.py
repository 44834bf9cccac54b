"""ops.spectrum and ops.intrinsic_dimension against numpy's eigendecomposition of A A^T and matrices
of known rank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfkernels import ops


def low_rank_tril(D, K, gen, noise=0.0):
    """Lower-triangular A whose columns beyond K are zero (rank K), plus `noise` on the diagonal."""
    A = torch.tril(torch.randn(D, D, dtype=torch.float64, generator=gen))
    A[:, K:] = 0
    return A + noise * torch.eye(D, dtype=torch.float64)


def test_spectrum_matches_numpy_eigh(device, gen):
    A = torch.randn(3, 6, 6, dtype=torch.float64, generator=gen)  # upper triangle must be ignored
    eigenvalues, vectors = (t.cpu() for t in ops.spectrum(A.to(device)))
    L = torch.tril(A)
    for b in range(3):
        expected = np.linalg.eigvalsh((L[b] @ L[b].T).numpy())[::-1]
        np.testing.assert_allclose(eigenvalues[b].numpy(), expected, rtol=1e-10, atol=1e-12)
    reconstructed = vectors @ torch.diag_embed(eigenvalues) @ vectors.mT
    torch.testing.assert_close(reconstructed, L @ L.mT)
    torch.testing.assert_close(vectors.mT @ vectors, torch.eye(6, dtype=torch.float64).expand(3, 6, 6))


def test_eigenvector_signs_are_fixed(device, gen):
    """A and -A (or A with a column's sign flipped) have the same A A^T: the same vectors must come back,
    each with its largest-magnitude entry positive, on every device (LAPACK and cuSOLVER pick signs apart)."""
    A = torch.tril(torch.randn(4, 7, 7, dtype=torch.float64, generator=gen)).to(device)
    flipped = A * torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0], dtype=torch.float64, device=device)
    _, U = ops.spectrum(A)
    for other in (-A, flipped):
        torch.testing.assert_close(ops.spectrum(other)[1], U, rtol=1e-9, atol=1e-9)
    peak = torch.gather(U, -2, U.abs().argmax(-2, keepdim=True))
    assert (peak > 0).all()
    torch.testing.assert_close(U.cpu(), ops.spectrum(A.cpu())[1], rtol=1e-9, atol=1e-9)


def test_spectrum_gradient_of_the_top_eigenvalue(device, gen):
    A = torch.tril(torch.randn(5, 5, dtype=torch.float64, generator=gen)).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: ops.spectrum(a)[0][..., 0], (A,))


@pytest.mark.parametrize("K", [1, 2, 5])
def test_intrinsic_dimension_finds_the_rank(K, device, gen):
    A = low_rank_tril(8, K, gen).to(device)
    assert ops.intrinsic_dimension(A).item() == K
    assert ops.intrinsic_dimension(low_rank_tril(8, K, gen, noise=1e-3).to(device)).item() == K  # noise floor
    assert ops.intrinsic_dimension(A, rel_threshold=1e-8).item() == K


def test_intrinsic_dimension_batches_and_full_rank(device, gen):
    batch = torch.stack([low_rank_tril(6, 2, gen), low_rank_tril(6, 3, gen)]).to(device)
    assert ops.intrinsic_dimension(batch).tolist() == [2, 3]
    assert ops.intrinsic_dimension(torch.eye(4, dtype=torch.float64), rel_threshold=0.5).item() == 4
    assert ops.intrinsic_dimension(torch.ones(1, 1)).item() == 1
    well_spread = torch.diag(torch.tensor([3.0, 2.0, 1.5, 1.0], dtype=torch.float64))  # no ratio reaches 10
    assert ops.intrinsic_dimension(well_spread).item() == 4
    assert ops.intrinsic_dimension(well_spread, min_gap=2.0).item() == 1  # 3^2 / 2^2 = 2.25


def test_bad_inputs(device):
    with pytest.raises(ValueError, match="'A' must be square"):
        ops.spectrum(torch.ones(3, 2, device=device))
    with pytest.raises(ValueError, match="'rel_threshold' must be None or a float in"):
        ops.intrinsic_dimension(torch.eye(3), rel_threshold=2.0)
    with pytest.raises(ValueError, match="'min_gap' must be a ratio > 1"):
        ops.intrinsic_dimension(torch.eye(3), min_gap=0.5)
    with pytest.raises(TypeError, match="'A' must be float32 or float64"):
        ops.intrinsic_dimension(torch.eye(3, dtype=torch.long))
