"""mfkernels.models: one thin wrapper per method, one API (see base.py): log_prob, sample, encode,
decode, project, loss, a serialisable config, and `build_model(name, config)` to rebuild from it.

    standard  StandardFlow  full-dimensional baseline
    dnf       DNF           Denoising Normalizing Flow (paper 000)
    mflow     MFlow         M-flow with M/D phases and the exact Gram density
    pie       PIE           split flow, narrow Gaussian off the manifold
    nif       NIF           noisy injective flow (paper 001), closed-form marginal or ELBO
    pr        PixelRejection  PR-D / PR-H / PR-M (paper 002): split flow + per-pixel Huber or MSE penalty
    hierarchical HierarchicalFlow cascade of pixel-rejection blocks, end to end or stage by stage
    spread    SpreadFlow    volume-preserving flow + learnable degenerate Gaussian prior (paper 003)
    chart     ChartFlow     atlas of conformal chart flows with VQ-AE chart regions (paper 004)
    rectangular RectangularFlow  split flow trained by its exact manifold likelihood (Caterini et al. 2021)

References:
    | The papers listed in docs/papers.md (titles, authors, links and the equation map)
"""

from __future__ import annotations

from typing import Any

from .base import Model, ModelConfig
from .chart import ChartFlow, ChartFlowConfig
from .dnf import DNF, DNFConfig
from .hierarchical import HierarchicalFlow, HierarchicalFlowConfig
from .mflow import MFlow, MFlowConfig
from .nif import NIF, NIFConfig
from .pie import PIE, PIEConfig
from .pixel_rejection import PixelRejection, PixelRejectionConfig
from .rectangular import RectangularFlow, RectangularFlowConfig
from .split_flow import SplitFlowModel
from .spread import SpreadFlow, SpreadFlowConfig
from .standard import StandardFlow, StandardFlowConfig

MODELS: dict[str, type[Model]] = {
    cls.name: cls
    for cls in (StandardFlow, DNF, MFlow, PIE, NIF, SpreadFlow, PixelRejection, HierarchicalFlow, ChartFlow,
                RectangularFlow)
}


def build_model(name: str, config: ModelConfig | dict[str, Any] | None = None, **options) -> Model:
    """A model by name (see MODELS) from a config object or dict."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    cls = MODELS[name]
    if isinstance(config, dict):
        config = cls.config_class.from_dict(config)
    return cls(config, **options)


__all__ = [
    "ChartFlow",
    "ChartFlowConfig",
    "DNF",
    "DNFConfig",
    "HierarchicalFlow",
    "HierarchicalFlowConfig",
    "PixelRejection",
    "PixelRejectionConfig",
    "RectangularFlow",
    "RectangularFlowConfig",
    "MFlow",
    "MFlowConfig",
    "MODELS",
    "Model",
    "ModelConfig",
    "NIF",
    "NIFConfig",
    "PIE",
    "PIEConfig",
    "SplitFlowModel",
    "SpreadFlow",
    "SpreadFlowConfig",
    "StandardFlow",
    "StandardFlowConfig",
    "build_model",
]
