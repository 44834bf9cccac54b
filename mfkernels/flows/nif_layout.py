"""Block structure of a Gaussian NIF layer whose A is an upsampling (paper 001, appendix on
nearest-neighbour upsampling): a c-channel latent image of size h x w mapped to a C-channel image of
size (f h) x (f w) by a stride-f transposed convolution with an f x f kernel (nearest-neighbour
upsampling followed by a 1 x 1 channel-mixing convolution is the case of a kernel constant over its
f x f positions). Each latent pixel then feeds exactly its own f x f output patch, so after the pixel
permutation below A is block-diagonal with P = h w blocks of size r x c, r = C f^2: the layout
`mfkernels.ops.nif_block` takes.

Pixel permutation: image (B, C, f h, f w) -> blocks (B, P, r), block p = i w + j holding the patch of
latent pixel (i, j), row o f^2 + a f + b = channel o at patch position (a, b) (torch's pixel_unshuffle
order); latent (B, c, h, w) -> (B, P, c).

References:
    | Normalizing Flows Across Dimensions (Cunningham et al., 2020)
    | https://arxiv.org/abs/2006.13070
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def upsample_blocks(weight: Tensor, factor: int, latent_size: tuple[int, int]) -> Tensor:
    """A (P, r, c) of the upsampling layer, P = h w, r = C factor^2.

    weight: (c, C, factor, factor), a conv_transpose2d weight (stride = kernel = factor), or (C, c), the
    channel mixing applied after nearest-neighbour upsampling. Every block is the same matrix, returned
    as an expanded view (no copy per block).
    """
    if factor < 1:
        raise ValueError(f"upsample_blocks: 'factor' must be >= 1, got {factor}")
    if weight.dim() == 2:
        weight = weight.T[:, :, None, None].expand(-1, -1, factor, factor)
    if weight.dim() != 4 or weight.shape[-2:] != (factor, factor):
        raise ValueError(f"upsample_blocks: 'weight' must be (c, C, {factor}, {factor}) or (C, c), "
                         f"got {tuple(weight.shape)}")
    c, C = weight.shape[:2]
    h, w = latent_size
    block = weight.reshape(c, C * factor * factor).T  # row o f^2 + a f + b, column k
    return block.unsqueeze(0).expand(h * w, C * factor * factor, c)


def image_to_blocks(x: Tensor, factor: int) -> Tensor:
    """(B, C, f h, f w) -> (B, h w, C f^2)."""
    patches = F.pixel_unshuffle(x, factor)  # (B, C f^2, h, w)
    return patches.flatten(2).transpose(1, 2)


def blocks_to_image(blocks: Tensor, factor: int, latent_size: tuple[int, int]) -> Tensor:
    """Inverse of image_to_blocks: (B, h w, C f^2) -> (B, C, f h, f w)."""
    h, w = latent_size
    patches = blocks.transpose(1, 2).reshape(blocks.shape[0], blocks.shape[2], h, w)
    return F.pixel_shuffle(patches, factor)


def latent_to_blocks(z: Tensor) -> Tensor:
    """(B, c, h, w) -> (B, h w, c)."""
    return z.flatten(2).transpose(1, 2)


def blocks_to_latent(blocks: Tensor, latent_size: tuple[int, int]) -> Tensor:
    """(B, h w, c) -> (B, c, h, w)."""
    return blocks.transpose(1, 2).reshape(blocks.shape[0], blocks.shape[2], *latent_size)
