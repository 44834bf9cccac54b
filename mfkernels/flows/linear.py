"""LULinear: an invertible linear layer y = W x + b with W = P L U (Kingma & Dhariwal 2018, Glow's
invertible 1x1 convolution; Durkan et al. 2019, nflows' LULinear).

P is a fixed permutation, L unit lower triangular, U upper triangular with diagonal exp(log_diag)
times a fixed sign, so log|det W| = sum(log_diag) costs nothing and the inverse is two triangular
solves. Initialised from the LU factorisation of a random orthogonal matrix (seeded).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Transform


class LULinear(Transform):
    """Acts on dimension `feature_dim` of (B, ..., features, ...) (default the last; 1 on (B, C, H, W)
    images is Glow's invertible 1x1 convolution); log|det| is counted once per position."""

    def __init__(self, features: int, seed: int = 0, feature_dim: int = -1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(features, features, dtype=torch.float64, generator=g))
        P, L, U = torch.linalg.lu(q)
        diag = torch.diagonal(U)
        self.register_buffer("permutation", P.to(torch.get_default_dtype()))
        self.register_buffer("sign", torch.sign(diag).to(torch.get_default_dtype()))
        self.lower = nn.Parameter(torch.tril(L, -1).to(torch.get_default_dtype()))
        self.upper = nn.Parameter(torch.triu(U, 1).to(torch.get_default_dtype()))
        self.log_diag = nn.Parameter(torch.log(diag.abs()).to(torch.get_default_dtype()))
        self.bias = nn.Parameter(torch.zeros(features))
        self.features, self.feature_dim = features, feature_dim

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.features, dtype=self.lower.dtype, device=self.lower.device)
        L = torch.tril(self.lower, -1) + eye
        U = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_diag))
        return L, U

    def weight(self) -> Tensor:
        L, U = self._factors()
        return self.permutation @ L @ U

    def _logabsdet(self, x: Tensor) -> Tensor:
        positions = math.prod(x.shape[1:-1])  # 1 for vectors; shape-only, so an empty batch works
        return self.log_diag.sum().expand(x.shape[0]) * positions

    def _to_last(self, x: Tensor, name: str) -> Tensor:
        if x.dim() == 0 or x.shape[self.feature_dim] != self.features:
            raise ValueError(f"LULinear: expected '{name}' with {self.features} features in dim {self.feature_dim}, "
                             f"got shape {tuple(x.shape)}")
        return x.movedim(self.feature_dim, -1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self._to_last(x, "x")
        return (x @ self.weight().mT + self.bias).movedim(-1, self.feature_dim), self._logabsdet(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = self._to_last(z, "z")
        x, logabsdet = self._solve(z)
        return x.movedim(-1, self.feature_dim), logabsdet

    def _solve(self, z: Tensor) -> tuple[Tensor, Tensor]:
        L, U = self._factors()
        # W x = z - b  <=>  L U x = P^T (z - b): forward then back substitution, on column vectors.
        rhs = ((z - self.bias) @ self.permutation).reshape(-1, self.features).mT
        y = torch.linalg.solve_triangular(L, rhs, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(U, y, upper=True).mT.reshape(z.shape)
        return x, -self._logabsdet(z)
