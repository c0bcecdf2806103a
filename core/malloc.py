"""Keep freed heap memory in the process instead of handing it back to the kernel at every free.

Why: glibc's malloc serves blocks above its mmap threshold (128 KiB, raised on the fly) with fresh
``mmap`` calls and returns freed memory with ``munmap``/trim, so a loop that allocates and drops
arrays of a few hundred KiB to a few MiB (the embedder's 320 px feature maps, dedup's crop grids,
the trainer's activations) pays a page fault for every page, every time. On the clustering stage
over the ``make demo`` corpus's 809 mined records (``python -m bench.allocator``): glibc's
defaults 185 s wall, 46 s of it kernel time, peak RSS 1.57 GB; with the two thresholds below 114 s,
2.5 s kernel, 1.76 GB (the embedder's trunk at 4 images per pass; it now runs 16-32). The outputs are
the same bytes (``docs/benchmarks.md``, "`make demo` and the clustering stage's time").

:func:`tune` sets ``M_MMAP_THRESHOLD`` to 256 MiB (only larger blocks are mapped directly) and
``M_TRIM_THRESHOLD`` to 512 MiB (free memory at the heap top is returned once it exceeds that), the
same as the ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment variables, which
win when the user sets them. Importing ``core`` calls it; ``IIDATA_MALLOC=default`` leaves glibc's
defaults. Not glibc (macOS, musl): nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20
ENV = "IIDATA_MALLOC"


def tune() -> bool:
    """Set the thresholds (True when glibc accepted them)."""
    if os.environ.get(ENV) == "default" or any(
        k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
