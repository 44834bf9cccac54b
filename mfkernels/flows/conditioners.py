"""Conditioner networks: map the identity half of a coupling layer (and a context) to parameters."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MLP(nn.Module):
    """x (B, in_features) [+ context (B, context_features)] -> (B, out_features).

    The last layer starts at zero, so a coupling layer built on it starts as the identity map (the
    usual initialisation of RealNVP/Glow-style flows, which keeps deep stacks stable early on).
    """

    def __init__(self, in_features: int, out_features: int, hidden_features: int = 64, num_layers: int = 2,
                 context_features: int = 0, activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        dims = [in_features + context_features] + [hidden_features] * num_layers
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), activation()]
        last = nn.Linear(dims[-1], out_features)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.context_features = context_features

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_features:
            if context is None:
                raise ValueError(f"MLP conditioner: expected a context of {self.context_features} features, got None")
            x = torch.cat([x, context], dim=-1)
        return self.net(x)
