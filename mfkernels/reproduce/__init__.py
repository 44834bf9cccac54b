"""Reproductions of the papers' experiments, run by `mfkernels reproduce NAME`."""

from __future__ import annotations

from typing import Any, Callable


def _dnf_spiral(**kwargs) -> dict[str, Any]:
    from .dnf_spiral import run

    return run(**kwargs)


def _spread_dimension(**kwargs) -> dict[str, Any]:
    from .spread_dimension import run

    return run(**kwargs)


def _nif_digits(**kwargs) -> dict[str, Any]:
    from .nif_digits import run

    return run(**kwargs)


def _pixel_rejection(**kwargs) -> dict[str, Any]:
    from .pixel_rejection import run

    return run(**kwargs)


EXPERIMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "dnf-spiral": _dnf_spiral, "spread-dimension": _spread_dimension, "nif-digits": _nif_digits,
    "pixel-rejection": _pixel_rejection}

__all__ = ["EXPERIMENTS"]
