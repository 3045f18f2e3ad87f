"""int8-table mode against the float64 product of the dequantized weights.

Bounds from the issue (a simulation predicts 5e-5 to 5e-4, up to 1.3e-3 at 1 bit with whole-row
activation groups); the measured values are recorded in docs/algorithm.md.
"""

import numpy as np
import pytest

import tmac
from tmac.metrics import nmse

FORMATS = [(1, "asym"), (2, "asym"), (3, "asym"), (4, "asym"), (2, "ternary"), (3, "sym")]
GROUP_SIZES = [32, 64, 128, None]
ACT_GROUPS = [32, 64, "row"]


def bound(act_group_size):
    return 3e-3 if act_group_size == "row" else 1e-3


@pytest.mark.parametrize("bits, scheme", FORMATS)
@pytest.mark.parametrize("group_size", GROUP_SIZES)
def test_int8_tables_nmse(bits, scheme, group_size):
    for seed in range(3):
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((48, 512)).astype(np.float32)
        x = rng.standard_normal((2, 512)).astype(np.float32)
        qw = tmac.quantize(w, bits=bits, group_size=group_size, scheme=scheme)
        exact = x.astype(np.float64) @ qw.dequantize().astype(np.float64).T
        for act in ACT_GROUPS:
            y = tmac.matmul(qw, x, backend="reference", act_group_size=act)
            assert nmse(y, exact) <= bound(act), (seed, act)


def test_float_tables_are_float32_accurate():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((32, 256)).astype(np.float32)
    x = rng.standard_normal(256).astype(np.float32)
    qw = tmac.quantize(w, bits=4, group_size=64)
    exact = qw.dequantize().astype(np.float64) @ x.astype(np.float64)
    assert nmse(tmac.matmul(qw, x, backend="reference", lut="float32"), exact) < 1e-12
