"""The registry drives the tests: every backend of every op equals the reference bit for bit."""

import numpy as np
import pytest

import tmac
from tmac.registry import OPS


def bitwise_equal(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(11)
    w = rng.standard_normal((70, 100)).astype(np.float32)
    x = rng.standard_normal((3, 100)).astype(np.float32)
    return tmac.quantize(w, bits=3, group_size=20), x


@pytest.mark.parametrize("op_name", sorted(OPS))
def test_every_backend_equals_reference(op_name, case):
    qw, x = case
    op = OPS[op_name]
    assert op.backends[0] == "reference" and "portable" in op.backends
    for backend in op.backends[1:]:
        if op_name == "lut_matmul":
            for lut in ("int8", "float32"):
                got = tmac.matmul(qw, x, backend=backend, lut=lut, act_group_size=20)
                want = tmac.matmul(qw, x, backend="reference", lut=lut, act_group_size=20)
                assert bitwise_equal(got, want), (backend, lut)
        else:
            got = tmac.dequant_matmul(qw, x, backend=backend)
            assert bitwise_equal(got, tmac.dequant_matmul(qw, x, backend="reference")), backend


def test_auto_is_a_kernel_path_equal_to_reference(case):
    qw, x = case
    assert bitwise_equal(tmac.matmul(qw, x), tmac.matmul(qw, x, backend="reference"))
