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


class ConvNet(nn.Module):
    """Conditioner for images (RealNVP / Glow's NN()): x (B, in_channels, H, W) [+ context (B,
    context_features), broadcast over positions as extra channels] -> (B, out_channels, H, W).

    conv 3x3 -> act -> conv 1x1 -> act -> conv 3x3, "same" padding; the last conv starts at zero so
    the coupling layer starts as the identity, like the MLP.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 64, context_features: int = 0,
                 activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        last = nn.Conv2d(hidden_channels, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels + context_features, hidden_channels, 3, padding=1), activation(),
            nn.Conv2d(hidden_channels, hidden_channels, 1), activation(),
            last,
        )
        self.context_features = context_features

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"ConvNet conditioner: expected images (B, C, H, W), got shape {tuple(x.shape)}")
        if self.context_features:
            if context is None:
                raise ValueError(
                    f"ConvNet conditioner: expected a context of {self.context_features} features, got None")
            maps = context[:, :, None, None].expand(-1, -1, *x.shape[-2:])
            x = torch.cat([x, maps], dim=1)
        return self.net(x)
