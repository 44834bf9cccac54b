"""The package version, in one place: setup.py, CMakeLists.txt and `mfkernels info` read it here."""

__version__ = "0.1.0"
