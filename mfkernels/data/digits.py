"""scikit-learn's bundled 8 × 8 handwritten digits (1797 images, 17 grey levels 0..16; shipped inside the
package, no download), the small real image set of the NIF reproduction (paper 001's claim tested on
a set that fits two CPU cores).

Images are dequantised with uniform noise, v = (k + U(0, 1)) / 17 ∈ [0, 1]^64, and fed to the models as
x = scale · (v − 1/2) (a fixed affine map, accounted for in bits per dimension):

    bpd = −(log p(x) + D log(scale) − D log 17) / (D log 2),

i.e. the negative log-likelihood of the 17-level discrete data under the dequantised model, in bits.
The train/test split is a seeded permutation (`test_size` images held out). `upscale=2` gives the
16 × 16 images (nearest neighbour) of the pixel-rejection reproduction.

References:
    | Normalizing Flows Across Dimensions (Cunningham et al., 2020)
    | https://arxiv.org/abs/2006.13070
    | Joint Manifold Learning and Density Estimation Using Normalizing Flows (Razavi et al., 2022)
    | https://arxiv.org/abs/2206.03293
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LEVELS = 17


def load_digit_images() -> Tensor:
    """The 1797 digits as integer grey levels, (1797, 64) float64."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError("the digits data set needs scikit-learn: pip install scikit-learn "
                          "(or pip install -e '.[test]')") from error
    return torch.as_tensor(load_digits().data, dtype=torch.float64)


class Digits:
    intrinsic_dim = None  # unknown: real data

    def __init__(self, scale: float = 4.0, test_size: int = 297, seed: int = 0, upscale: int = 1):
        if scale <= 0 or not 0 < test_size < 1797 or upscale < 1:
            raise ValueError(f"Digits: need scale > 0, 0 < test_size < 1797 and upscale >= 1, got {scale}, "
                             f"{test_size}, {upscale}")
        self.scale, self.seed, self.side = scale, seed, 8 * upscale
        self.ambient_dim, self.image_shape = self.side**2, (1, self.side, self.side)
        levels = load_digit_images()
        if upscale > 1:  # nearest-neighbour, e.g. 16 x 16 for paper 002's image models
            levels = levels.reshape(-1, 8, 8).repeat_interleave(upscale, 1).repeat_interleave(upscale, 2).flatten(1)
        order = torch.randperm(levels.shape[0], generator=torch.Generator().manual_seed(seed))
        self.test_levels, self.train_levels = levels[order[:test_size]], levels[order[test_size:]]

    def to_model_space(self, levels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.rand(levels.shape, generator=generator, dtype=torch.float64)
        return self.scale * ((levels + noise) / LEVELS - 0.5)

    def to_images(self, x: Tensor) -> Tensor:
        """Model-space vectors back to [0, 1] images (B, side, side)."""
        return (x.detach().double() / self.scale + 0.5).clamp(0, 1).reshape(-1, self.side, self.side)

    def sample(self, n: int | None = None, generator: torch.Generator | None = None, split: str = "train",
               dtype=torch.float32) -> tuple[Tensor, Tensor]:
        """(dequantised images in model space, integer levels); n=None: the whole split (n must not
        exceed it: real data are not resampled)."""
        if split not in ("train", "test"):
            raise ValueError(f"Digits.sample: 'split' must be 'train' or 'test', got {split!r}")
        levels = self.train_levels if split == "train" else self.test_levels
        if n is not None:
            if n > levels.shape[0]:
                raise ValueError(f"Digits.sample: the {split} split has {levels.shape[0]} images, asked for {n}")
            levels = levels[:n]
        return self.to_model_space(levels, generator).to(dtype), levels

    def bits_per_dim(self, log_prob: Tensor) -> Tensor:
        """Per-image bits per dimension from model-space log densities."""
        D = self.ambient_dim
        return -(log_prob.double() + D * math.log(self.scale) - D * math.log(LEVELS)) / (D * math.log(2))
