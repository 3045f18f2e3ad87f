"""Results are bitwise identical for any thread count, any repeat, any ISA path; and a CPU without
AVX2/AVX-512 (simulated by telling Numba to compile for baseline x86-64) gets the portable path
without compiling an unsupported kernel."""

import json
import os
import subprocess
import sys

import numpy as np

import tmac
from tmac.registry import OPS

THREADS_PROBE = """
import json, sys, numpy as np, numba, tmac
rng = np.random.default_rng(3)
w = rng.standard_normal((300, 576)).astype(np.float32)
x = rng.standard_normal((5, 576)).astype(np.float32)
out = {}
for bits in (1, 4):
    qw = tmac.quantize(w, bits=bits, group_size=64)
    for lut in ("int8", "float32"):
        runs = [tmac.matmul(qw, x, lut=lut, threads=t) for t in (1, 2, 4) for _ in range(2)]
        ref = tmac.matmul(qw, x, lut=lut, backend="reference")
        out[f"{bits}-{lut}"] = all(np.array_equal(r.view(np.uint32), ref.view(np.uint32)) for r in runs)
out["threads"] = numba.config.NUMBA_NUM_THREADS
print(json.dumps(out))
"""


def test_one_two_and_four_threads_and_repeats_are_bitwise_identical():
    env = dict(os.environ, NUMBA_NUM_THREADS="4")
    result = subprocess.run([sys.executable, "-c", THREADS_PROBE], env=env, capture_output=True,
                            text=True, check=True)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out.pop("threads") == 4
    assert all(out.values()), out


def test_every_isa_path_gives_the_same_bits():
    rng = np.random.default_rng(9)
    qw = tmac.quantize(rng.standard_normal((130, 192)).astype(np.float32), bits=2, group_size=32)
    x = rng.standard_normal((17, 192)).astype(np.float32)
    for lut in ("int8", "float32"):
        outputs = [tmac.matmul(qw, x, backend=b, lut=lut) for b in OPS["lut_matmul"].backends]
        assert all(np.array_equal(o.view(np.uint32), outputs[0].view(np.uint32)) for o in outputs)


NO_SIMD_PROBE = """
import json, sys, numpy as np, tmac
from tmac.kernels import dispatch
qw = tmac.quantize(np.random.default_rng(0).standard_normal((40, 64)).astype(np.float32), bits=3,
                   group_size=32)
x = np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32)
y = tmac.matmul(qw, x)
same = bool(np.array_equal(y.view(np.uint32), tmac.matmul(qw, x, backend="reference").view(np.uint32)))
loaded = sorted(m for m in sys.modules if m.startswith(("tmac.kernels.portable", "tmac.kernels.x86")))
print(json.dumps({"available": dispatch.available(), "path": dispatch.choose("lut_int8"),
                  "same": same, "loaded": loaded}))
"""


def test_cpu_without_avx2_or_avx512_runs_the_portable_path_only(tmp_path):
    env = dict(os.environ, NUMBA_CPU_NAME="x86-64", NUMBA_CPU_FEATURES="",
               NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("TMAC_ISA", None)
    result = subprocess.run([sys.executable, "-c", NO_SIMD_PROBE], env=env, capture_output=True,
                            text=True, check=True)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["available"] == ["portable"] and out["path"] == "portable" and out["same"]
    assert out["loaded"] == ["tmac.kernels.portable"]      # no x86 path module, no x86 primitive
    info = subprocess.run([sys.executable, "-m", "tmac", "info"], env=env, capture_output=True,
                          text=True, check=True).stdout
    assert "ISA paths available: portable" in info
