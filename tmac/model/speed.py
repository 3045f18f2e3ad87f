"""Tokens per second of a runtime, as llama-bench measures them: prefill from an empty cache and
one-token decode steps, medians over repeats after a warm-up, several runtimes taking turns.

Any object with tmac's Runtime methods ``reset()`` and ``forward(tokens)`` can be timed (tmac's
Runtime, tmac.model.llamacpp's LlamaCppRuntime).
"""
from __future__ import annotations

import statistics
import time


def measure_once(rt, prompt_ids, n_decode):
    """(prefill tokens/s, decode tokens/s) of one run: ``prompt_ids`` from an empty cache, then
    ``n_decode`` one-token steps after one token of context."""
    rt.reset()
    start = time.perf_counter()
    rt.forward(prompt_ids)
    t_pre = time.perf_counter() - start
    rt.reset()
    rt.forward(prompt_ids[:1])
    token = [int(prompt_ids[1])]
    start = time.perf_counter()
    for _ in range(n_decode):
        rt.forward(token)
    t_dec = time.perf_counter() - start
    return len(prompt_ids) / t_pre, n_decode / t_dec


def measure(runtimes, prompt_ids, n_decode, repeat):
    """[(prefill tokens/s, decode tokens/s)] per runtime: medians over ``repeat`` runs after one
    warm-up run each (compilation, caches). The runtimes take turns, run by run, so that a
    machine's drift (another process, the clock) touches them alike."""
    for rt in runtimes:
        measure_once(rt, prompt_ids, n_decode)
    runs = [[measure_once(rt, prompt_ids, n_decode) for rt in runtimes] for _ in range(repeat)]
    return [(statistics.median(run[i][0] for run in runs),
             statistics.median(run[i][1] for run in runs)) for i in range(len(runtimes))]
