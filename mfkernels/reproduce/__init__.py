"""Reproductions of the papers' experiments, run by `mfkernels reproduce NAME`."""

from __future__ import annotations

from typing import Any, Callable


def _dnf_spiral(**kwargs) -> dict[str, Any]:
    from .dnf_spiral import run

    return run(**kwargs)


EXPERIMENTS: dict[str, Callable[..., dict[str, Any]]] = {"dnf-spiral": _dnf_spiral}

__all__ = ["EXPERIMENTS"]
