"""Timing for displays and benchmarks: medians over repeats, after a warm-up call.

Speed is never asserted in tests; these numbers are for people to read.
"""

import time

import numpy as np


def sample_seconds(function, repeats=5, warmup=1):
    """Wall times of ``repeats`` calls of ``function()``, after ``warmup`` untimed calls
    (the first call may compile a kernel or fill caches)."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(function, repeats=5, warmup=1):
    """Median wall time of ``function()`` over ``repeats`` calls, after ``warmup`` untimed calls."""
    return float(np.median(sample_seconds(function, repeats, warmup)))
