"""Reproductions of the papers' experiments, run by `mfkernels reproduce NAME`: each module here has a
`run(out_dir, quick, seed, device, progress, ...) -> dict` and is imported only when asked for. A rerun
rewrites the experiment's folder (its training runs pass overwrite=True): the folder is that experiment's."""

from __future__ import annotations

import importlib
from typing import Any, Callable

MODULES = {"dnf-spiral": "dnf_spiral", "spread-dimension": "spread_dimension", "nif-digits": "nif_digits",
           "pixel-rejection": "pixel_rejection", "chart-flows": "chart_flows", "exact-manifold": "exact_manifold"}


def _lazy(module: str) -> Callable[..., dict[str, Any]]:
    def run(**kwargs) -> dict[str, Any]:
        return importlib.import_module(f".{module}", __name__).run(**kwargs)

    run.__name__ = module
    return run


EXPERIMENTS: dict[str, Callable[..., dict[str, Any]]] = {name: _lazy(module) for name, module in MODULES.items()}

__all__ = ["EXPERIMENTS"]
