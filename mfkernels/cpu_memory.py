"""Keep freed CPU memory inside the process, so that fresh op outputs do not page-fault.

Every call of a CPU op allocates its outputs and gradients anew. glibc's malloc hands blocks above its
mmap threshold back to the kernel on free, and trims the top of the heap once more than twice that
threshold is free, so with outputs of a few tens of MB (a (4096, 1024) float32 tensor is 16 MB) every
call touches fresh pages and pays a page fault per 4 KB, on every thread at once. Measured on the
2-core CI machine: allocating and filling three 16 MB tensors took 29.6 ms with glibc's defaults and
4.0 ms with freed memory kept; affine_coupling (4096, 1024) forward + backward went from 15.4 ms to
8.2 ms (the twin: 14.9 and 14.7 ms). `retain_freed_memory()` raises the mmap threshold to its
maximum (32 MB on 64-bit glibc) and the trim threshold to 1 GiB through `mallopt`: freed blocks then stay
in the heap for the next call, at the price of a resident set that does not shrink after a peak
(PyTorch's CPU tuning guide gets the same from jemalloc or tcmalloc). Process-wide, so opt-in:
`mfkernels bench --retain-freed-memory`, or a call at the start of a training script.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD_BYTES = 1 << 30

_retained = False


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring). Returns True when the
    settings took effect, False where there is no glibc `mallopt` (macOS, musl, Windows)."""
    global _retained
    if _retained:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _retained = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    return _retained


def freed_memory_retained() -> bool:
    """Whether `retain_freed_memory()` took effect in this process."""
    return _retained
