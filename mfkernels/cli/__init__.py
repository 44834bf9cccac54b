"""mfkernels.cli: the `mfkernels` command line: the parser and its dispatch (`parser`), what train / eval /
sample do (`commands`) and the build and dispatcher report of `mfkernels info` (`info`)."""

from .parser import build_parser, main

__all__ = ["build_parser", "main"]
