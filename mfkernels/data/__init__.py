"""Data sets generated in code (seeded, no downloads): two moons, and data on known manifolds with
their exact densities (thin spiral, von Mises circle, von Mises-Fisher mixture on the sphere)."""

from .manifolds import (
    DATASETS,
    Embedded,
    ThinSpiral,
    VonMisesCircle,
    VonMisesFisherMixture,
    make_dataset,
    sample_points,
)
from .toy import two_moons

__all__ = [
    "DATASETS",
    "Embedded",
    "ThinSpiral",
    "VonMisesCircle",
    "VonMisesFisherMixture",
    "make_dataset",
    "sample_points",
    "two_moons",
]
