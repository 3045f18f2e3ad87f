"""Ctrl-C during long work leaves caches as they were: no half-written file, no temp litter."""

import json
import os
import signal
import subprocess
import sys


def _default_sigint():
    """In the child before exec: SIGINT back to its default action. A shell without job control
    starts background commands with SIGINT ignored, the ignore is inherited, and Python then
    never turns Ctrl-C into KeyboardInterrupt (a CI run started with `&` failed that way)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_tune_keeps_the_cache_intact(tmp_path):
    cache = tmp_path / "tune.json"
    before = {"some|avx512|64x64|b2|n1|t1|int8": {"tiles_per_task": 1, "us": 1.0, "tried": {}}}
    cache.write_text(json.dumps(before))
    env = dict(os.environ, TMAC_CACHE_DIR=str(tmp_path))
    # 36 cases; the signal goes once the first is done (tuning is under way, the cache not yet
    # written), not after a fixed sleep: with warm Numba caches a short list can finish first
    process = subprocess.Popen([sys.executable, "-m", "tmac", "tune", "--shapes", "4096x4096",
                                "11008x4096", "4096x11008", "--bits", "1", "2", "3", "4",
                                "--n", "1", "8", "64", "--threads", "1"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_default_sigint)
    first_case = process.stdout.readline()
    assert "tiles_per_task=" in first_case
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in err
    assert json.loads(cache.read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tune.json"]
