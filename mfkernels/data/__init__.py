"""Toy data sets generated in code (seeded, no downloads)."""

from .toy import two_moons

__all__ = ["two_moons"]
