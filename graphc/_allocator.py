"""The C allocator's settings for eager work (glibc only).

Eager training allocates and frees arrays of a few megabytes many times per step. glibc's
malloc serves those from fresh `mmap`s or trims them back to the kernel on free, by a threshold
it moves as the program runs (`M_MMAP_THRESHOLD` follows the largest chunk freed so far), so
whether each step pays for thousands of page faults depends on the history of the process: the
LeNet training step at batch 64 took 8.2 ms with ~800 faults per step and 5.7 ms with none.
Fixing the thresholds makes it predictable: arrays up to 32 MB come from the heap, and the free
heap is kept for reuse rather than trimmed. A trim threshold of 64 MB was not enough: a
transformer's training step at batch 16 x 128 frees more than that at its end, and the next
step faulted ~9,700 pages back in (112 ms a step against 92 ms untrimmed; at 32 x 256, 13,000
faults). So the process keeps the heap of its largest step, as PyTorch's caching allocator keeps
GPU memory. Arrays over 32 MB are still mapped and returned at once.

`GRAPHC_MALLOC_TUNING=0` leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20  # glibc's own upper bound for the moving threshold
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes: never trim


def tune() -> bool:
    """Fix glibc's mmap and trim thresholds; whether they were set."""
    if os.environ.get("GRAPHC_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "gnu_get_libc_version"):
            return False  # not glibc (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


TUNED = tune()
