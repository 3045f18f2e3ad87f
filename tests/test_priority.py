"""Execution priority (tmac.priority): ``low`` really reaches every thread that runs inference --
Numba's workers included, whether they existed before or are started after -- and the outputs
are bit for bit those of ``normal``. Each case runs in its own process: a lowered priority is
for the whole process and, unprivileged, for good."""

import json
import os
import subprocess
import sys

import pytest

from tmac import latency, priority

linux_only = pytest.mark.skipif(not priority.uses_sched_idle(),
                                reason="SCHED_IDLE is Linux's; elsewhere low means nice 19")

PROBE = """
import hashlib, json, sys
from tmac.model import loader, runtime, tiny
from tmac.priority import thread_ids, thread_priorities, thread_slice_ns

LINEAR = ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
          "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight", "token_embd.weight")
path = tiny.write_tiny_llama(sys.argv[1], types={s: "Q4_0" for s in LINEAR}, dim=256,
                             ffn_dim=512, n_heads=4, n_kv_heads=2, n_layers=2)
pm = runtime.prepare_native(loader.load(path, native=True).weights)
ids = list(range(3, 15))
out = {}
if sys.argv[2] == "pool-first":                  # the worker threads exist before "low"
    rt = runtime.Runtime(pm, max_ctx=32, max_seq=16, threads=2)
    out["normal"] = hashlib.sha256(rt.forward(ids, all_logits=True).tobytes()).hexdigest()
    out["before"] = sorted(set(thread_priorities().values()))
    out["slices_before"] = sorted({thread_slice_ns(t) or 0 for t in thread_ids()})
rt = runtime.Runtime(pm, max_ctx=32, max_seq=16, threads=2, priority="low")
assert rt.fused
out["low"] = hashlib.sha256(rt.forward(ids, all_logits=True).tobytes()).hexdigest()
out["after"] = sorted(set(thread_priorities().values()))
out["n_threads"] = len(thread_priorities())
out["slices"] = sorted({thread_slice_ns(t) or 0 for t in thread_ids()})
print(json.dumps(out))
"""


def run_probe(tmp_path, order):
    pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")
    env = dict(os.environ, NUMBA_NUM_THREADS="2")          # workers even on a one-core machine
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "q4_0.gguf"), order],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@linux_only
def test_low_reaches_worker_threads_that_already_run_and_changes_no_bit(tmp_path):
    out = run_probe(tmp_path, "pool-first")
    assert out["before"] == [["SCHED_OTHER", 0]]
    assert out["n_threads"] >= 2                           # the main thread and a Numba worker
    assert out["after"] == [["SCHED_IDLE", priority.LOW_NICE]]
    if out["slices_before"] != [0]:                        # the kernel has custom slices (6.12+)
        assert out["slices"] == [priority.SHORT_SLICE_NS]
    assert out["low"] == out["normal"]


@linux_only
def test_workers_started_after_low_inherit_it(tmp_path):
    out = run_probe(tmp_path, "low-first")
    assert out["n_threads"] >= 2
    assert out["after"] == [["SCHED_IDLE", priority.LOW_NICE]]
    assert len(out["slices"]) == 1 and out["slices"][0] in (0, priority.SHORT_SLICE_NS)


def test_unknown_priority_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"priority must be one of \('normal', 'low'\), got 'idle'"):
        priority.set_priority("idle")


def test_normal_without_a_previous_low_changes_nothing(monkeypatch):
    def refuse(*args):
        raise AssertionError("normal must not touch the threads when tmac lowered nothing")

    monkeypatch.setattr(os, "setpriority", refuse)
    priority.set_priority("normal")


def test_a_refused_raise_back_to_normal_is_one_clear_error(monkeypatch):
    """As for an unprivileged user: the OS refuses to raise a lowered priority again."""
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(priority, "_before_low", (0, 0, None))
    monkeypatch.setattr(priority, "_set_thread", refuse)
    with pytest.raises(OSError, match="refuses to raise this process's priority again"):
        priority.set_priority("normal")


def test_latency_summary_takes_nearest_rank_percentiles():
    samples = [i / 1000 for i in range(1, 201)]           # 1..200 ms, shuffled order
    summary = latency.summary(samples[::-1])
    assert summary == {"wakeups": 200, "p50_ms": 100.0, "p99_ms": 198.0, "max_ms": 200.0}
    with pytest.raises(ValueError, match="no wake-ups"):
        latency.summary([])


def test_the_probe_reports_one_json_line():
    done = subprocess.run([sys.executable, "-m", "tmac.latency", "0.05"], capture_output=True,
                          text=True, check=True)
    report = json.loads(done.stdout)
    assert report["wakeups"] >= 5 and 0 <= report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]
    bad = subprocess.run([sys.executable, "-m", "tmac.latency", "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "positive" in bad.stderr
