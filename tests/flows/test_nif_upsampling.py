"""mfkernels.flows.nif_layout: the block matrices of an upsampling layer reproduce torch's transposed convolution and
nearest-neighbour upsampling, the pixel permutation round-trips, and nif_block on those blocks equals
the dense layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mfkernels.flows import nif_layout as nif
from mfkernels.ops import nif_block


def apply_blocks(A, z):
    """x = A z blockwise, back in image layout."""
    return torch.einsum("prc,bpc->bpr", A, nif.latent_to_blocks(z))


def test_blocks_reproduce_conv_transpose_and_nearest_upsampling(gen):
    z = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=gen)
    weight = torch.randn(3, 2, 2, 2, dtype=torch.float64, generator=gen)  # c = 3 -> C = 2, factor 2
    A = nif.upsample_blocks(weight, 2, (4, 5))
    assert A.shape == (20, 8, 3)
    x = nif.blocks_to_image(apply_blocks(A, z), 2, (4, 5))
    torch.testing.assert_close(x, F.conv_transpose2d(z, weight, stride=2))
    mixing = torch.randn(2, 3, dtype=torch.float64, generator=gen)  # (C, c)
    A = nif.upsample_blocks(mixing, 2, (4, 5))
    expected = torch.einsum("oc,bchw->bohw", mixing, F.interpolate(z, scale_factor=2, mode="nearest"))
    torch.testing.assert_close(nif.blocks_to_image(apply_blocks(A, z), 2, (4, 5)), expected)


def test_pixel_permutation_round_trips(gen):
    x = torch.randn(2, 3, 8, 6, generator=gen)
    blocks = nif.image_to_blocks(x, 2)
    assert blocks.shape == (2, 12, 12)
    torch.testing.assert_close(nif.blocks_to_image(blocks, 2, (4, 3)), x, rtol=0, atol=0)
    z = torch.randn(2, 3, 4, 3, generator=gen)
    torch.testing.assert_close(nif.blocks_to_latent(nif.latent_to_blocks(z), (4, 3)), z, rtol=0, atol=0)


def test_nif_block_on_an_upsampling_layer_equals_the_dense_gaussian(gen):
    """log p(x) of x = A z + b + eps for the 2x upsampling of a 3 x 2 x 2 latent, dense vs blocks."""
    weight = torch.randn(3, 3, 2, 2, dtype=torch.float64, generator=gen)
    A = nif.upsample_blocks(weight, 2, (2, 2))
    x_img = torch.randn(4, 3, 4, 4, dtype=torch.float64, generator=gen)
    log_sigma = torch.tensor(-0.7, dtype=torch.float64)
    log_px, *_ = nif_block(nif.image_to_blocks(x_img, 2), A, torch.zeros((), dtype=torch.float64), log_sigma)
    # dense: the transposed convolution as a matrix acting on the flattened latent
    basis = torch.eye(12, dtype=torch.float64).reshape(12, 3, 2, 2)
    dense_A = F.conv_transpose2d(basis, weight, stride=2).reshape(12, 48).T
    marginal = torch.distributions.LowRankMultivariateNormal(
        torch.zeros(48, dtype=torch.float64), dense_A, torch.full((48,), torch.exp(2 * log_sigma).item(),
                                                                   dtype=torch.float64))
    torch.testing.assert_close(log_px, marginal.log_prob(x_img.reshape(4, 48)))
