"""No stale compiled kernel: every cached function of the package is stamped with one digest over
all jitted sources (tmac.kernels.jit), so editing a callee in another file recompiles its callers."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tmac
from tmac.kernels import jit

PACKAGE = Path(tmac.__file__).resolve().parent


def test_jitted_sources_cover_callees_across_files():
    names = {str(f.relative_to(jit.PACKAGE_DIR)) for f in jit.jitted_sources()}
    # the callers and the files they call into or read constants from
    for expected in ("kernels/tables.py", "kernels/simd/generic.py", "kernels/simd/x86.py",
                     "kernels/x86_avx512.py", "model/ops.py",
                     "model/expf.py", "model/fused.py"):
        assert expected in names


def test_decorators_come_from_the_stamping_module():
    """A module taking njit/prange/intrinsic from numba directly could be imported before the
    locator is installed; every jitted module takes them from tmac.kernels.jit."""
    direct = re.compile(r"^\s*from numba(\.extending)? import .*\b(njit|jit|prange|intrinsic)\b"
                        r"|numba\.(njit|jit)\(", re.MULTILINE)
    offenders = [str(f.relative_to(PACKAGE)) for f in PACKAGE.rglob("*.py")
                 if f.name != "jit.py" and direct.search(f.read_text())]
    assert offenders == []


SWIGLU = textwrap.dedent("""
    import sys
    import numpy as np
    import tmac
    from tmac.model import ops
    assert tmac.__file__.startswith(sys.argv[1]), tmac.__file__
    gate_up = np.linspace(-3, 3, 16, dtype=np.float32).reshape(1, 16)
    out = np.zeros((1, 8), np.float32)
    ops.swiglu(gate_up, 1, 8, out)
    print(out.tobytes().hex(), sum(ops.swiglu.stats.cache_hits.values()))
""")


NOTICE = "tmac: compiling kernels for this CPU"


def _run(root, cache):
    """(output values, cache hits) of SWIGLU in a fresh process; asserts that the one-line
    compile notice is on stderr exactly when something compiled."""
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(cache))
    env.pop("TMAC_QUIET", None)
    done = subprocess.run([sys.executable, "-c", SWIGLU, str(root)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    values, hits = done.stdout.split()
    notices = [line for line in done.stderr.splitlines() if line.startswith(NOTICE)]
    assert len(notices) == (0 if int(hits) else 1), done.stderr
    return values, int(hits)


def test_editing_a_callee_in_another_file_recompiles_the_caller(tmp_path):
    """ops.swiglu inlines expf from model/expf.py: change a constant there, in a copy of the
    package, and the cached swiglu must not be loaded again."""
    root = tmp_path / "src"
    shutil.copytree(PACKAGE, root / "tmac", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    first, hits = _run(root, cache)
    assert hits == 0
    again, hits = _run(root, cache)
    assert (again, hits) == (first, 1)                       # unchanged sources: cached
    expf_file = root / "tmac" / "model" / "expf.py"
    source = expf_file.read_text()
    assert "r + np.float32(1.0)" in source
    expf_file.write_text(source.replace("r + np.float32(1.0)", "r + np.float32(1.5)", 1))
    edited, hits = _run(root, cache)
    assert hits == 0 and edited != first                     # recompiled, new values
    fresh, _ = _run(root, tmp_path / "fresh-cache")
    assert edited == fresh
