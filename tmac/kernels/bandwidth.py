"""The machine's memory read bandwidth, measured: the ceiling of a memory-bound decode.

``read_bandwidth(threads)`` streams once through a buffer several times the last-level cache
(so that nothing is served from cache), summing its 64-bit integers in ``threads`` parallel
chunks, and returns bytes per second (the median of ``repeat`` passes after a warm-up pass that
also faults the pages in). A decode step that reads B bytes of weights cannot take less than
B / read_bandwidth seconds.
"""
from __future__ import annotations

import glob
import statistics
import time

import numpy as np

from tmac.kernels.jit import njit, prange


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache (Linux sysfs), or 64 MiB if unknown."""
    best = 0
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = open(path).read().strip()
            mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1], 1)
            best = max(best, int(text.rstrip("KMG")) * mult)
        except (OSError, ValueError):
            continue
    return best or 64 * 1024**2


@njit(parallel=True, cache=True)
def _stream_sum(words, n_chunks):
    """Sum of ``words`` (int64, 1-D), read in ``n_chunks`` parallel contiguous chunks."""
    chunk = words.size // n_chunks
    partial = np.zeros(n_chunks, np.int64)
    for c in prange(n_chunks):
        partial[c] = words[c * chunk:(c + 1) * chunk].sum()   # (an explicit loop runs 4x slower)
    return partial.sum()


def read_bandwidth(threads: int | None = None, nbytes: int | None = None, repeat: int = 5) -> float:
    """Bytes per second streamed from memory by ``threads`` threads (None: Numba's current
    count). ``nbytes``: buffer size, default four times the last-level cache (at least 64 MiB)."""
    from tmac.kernels import num_threads

    nbytes = nbytes or max(4 * last_level_cache_bytes(), 64 * 1024**2)
    words = np.ones(nbytes // 8, np.int64)
    with num_threads(threads) as t:
        n_chunks = 8 * t
        words = words[:words.size // n_chunks * n_chunks]
        rates = []
        for r in range(repeat + 1):
            start = time.perf_counter()
            total = _stream_sum(words, n_chunks)
            seconds = time.perf_counter() - start
            if total != words.size:                  # keeps the read from being optimized away
                raise RuntimeError("bandwidth probe summed wrongly")
            if r:
                rates.append(words.nbytes / seconds)
    return statistics.median(rates)
