"""Loads the compiled ops into `torch.ops.mfkernels` and reports how they were built.

The pip build produces the importable module `mfkernels._C`. A library built with CMake
(`libmfkernels_ops.so`) can be used instead by pointing MFKERNELS_LIBRARY at it.
"""

from __future__ import annotations

import os

import torch

_LIBRARY_ENV = "MFKERNELS_LIBRARY"


def _load() -> str:
    path = os.environ.get(_LIBRARY_ENV)
    if path:
        torch.ops.load_library(path)
        return path
    try:
        from . import _C
    except ImportError as exc:
        raise ImportError(
            "mfkernels' compiled ops are missing or were built against another torch. Build them "
            "against the torch you run with `pip install --no-build-isolation -e .` from the "
            f"source tree, or set {_LIBRARY_ENV} to a library built with CMake. ({exc})"
        ) from exc
    return _C.__file__


LIBRARY_PATH = _load()


def build_info() -> dict[str, object]:
    """What the loaded library was compiled with, as reported by the library itself."""
    fields = dict(
        item.split("=", 1) for item in torch.ops.mfkernels._build_info().split(";") if "=" in item
    )
    archs = [a for a in fields.get("cuda_archs", "").split(",") if a and a != "unknown"]
    return {
        "version": fields.get("version", "?"),
        "cuda_built": fields.get("cuda") == "1",
        "cuda_archs": archs,
        "library": LIBRARY_PATH,
    }
