"""Process settings for serving the app: torch threads per request and glibc's malloc arenas.

Called once at start-up, before the server's threads start (`python app.py`, bench/load_app.py). No Gradio here.
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch

CONCURRENCY = 2  # requests computed at the same time (the app's queue; the model is shared and thread-safe)
M_ARENA_MAX = -8  # glibc's mallopt parameter number


def configure_threads() -> int:
    """Give each of the CONCURRENCY requests its share of the CPU cores for torch, unless OMP_NUM_THREADS is set.

    torch's default is a thread per core for every request at once: two requests on two cores then run four
    compute threads. One thread per request measured 9% less CPU per request and p50 308 vs 349 ms with 4 clients
    (docs/PERFORMANCE.md). Returns the number of threads set (0 when left alone).
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return 0
    threads = max(1, (os.cpu_count() or 1) // CONCURRENCY)
    torch.set_num_threads(threads)
    return threads


def single_malloc_arena() -> bool:
    """Have glibc's malloc use one arena for all threads (unless MALLOC_ARENA_MAX is set); True when set.

    glibc gives threads that allocate at the same time their own arenas (up to 8 per core), and Gradio computes
    requests on a pool of worker threads: under 4 clients the server's resident set climbed by 35-57 MB over its
    first 150 requests to a plateau near 1,010 MB. With one arena it stays near 940 MB (+13 MB) at the same
    throughput (docs/PERFORMANCE.md). Call it before the server's threads start.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 1))
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False


def give_back_memory() -> bool:
    """Return the free memory of glibc's heap to the system (`malloc_trim(0)`) after a heavy request; True if any.

    A Compare frees hundreds of MB of tensors that glibc would otherwise keep in the process. False where the C
    library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
