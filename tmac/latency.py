"""A latency probe: how late a sleeping process wakes up while something else runs.

    python -m tmac.latency SECONDS [WORK_MS]   -> one JSON line: wake-ups, p50/p99/max lateness (ms)

It sleeps 1 ms in a loop and records, per wake-up, how much later than asked it ran again: what
an interactive program (a UI thread, an audio callback) feels when the cores are busy. The
baseline on an idle machine is the timer's own slack (~0.05-0.1 ms on Linux). With WORK_MS it
also computes that long after every wake-up, as a program that has real work per event (a UI
frame): a scheduler favours a task that mostly sleeps, less one that also computes. Used by
``tmac bench priority`` (tmac.model.priority_bench); it imports nothing heavy so that it starts
fast and stays small.
"""
from __future__ import annotations

import json
import sys
import time

PERIOD_S = 1e-3


def lateness(seconds: float, period: float = PERIOD_S, work: float = 0.0) -> list[float]:
    """Seconds each ``period`` sleep overran, for ``seconds`` of wall time; after each wake-up
    the probe computes (spins) for ``work`` seconds."""
    late = []
    end = time.perf_counter() + seconds
    while (start := time.perf_counter()) < end:
        time.sleep(period)
        woke = time.perf_counter()
        late.append(woke - start - period)
        while time.perf_counter() - woke < work:
            pass
    return late


def summary(late: list[float]) -> dict:
    """{"wakeups", "p50_ms", "p99_ms", "max_ms"} of lateness samples (seconds), nearest rank."""
    if not late:
        raise ValueError("no wake-ups were recorded: the probe needs a duration of > 1 ms")
    ordered = sorted(late)

    def rank(q):
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1e3

    return {"wakeups": len(ordered), "p50_ms": rank(0.50), "p99_ms": rank(0.99),
            "max_ms": ordered[-1] * 1e3}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        seconds = float(argv[0])
        work_ms = float(argv[1]) if len(argv) > 1 else 0.0
        if not seconds > 0 or not work_ms >= 0 or len(argv) > 2:
            raise ValueError
    except (IndexError, ValueError):
        print("usage: python -m tmac.latency SECONDS [WORK_MS] (a positive duration, a work time "
              ">= 0 per wake-up)", file=sys.stderr)
        return 2
    print(json.dumps(summary(lateness(seconds, work=work_ms / 1e3))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
