"""The public API: shapes, options, properties over random inputs, and errors for bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tmac
from tmac.reference import lut_matmul as ref_lut
from tmac.reference import tables


@pytest.fixture(scope="module")
def qw():
    w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    return tmac.quantize(w, bits=2, group_size=32)


def test_gemv_and_gemm_shapes_agree(qw):
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    y = tmac.matmul(qw, x, backend="reference")
    assert y.shape == (3, 8) and y.dtype == np.float32
    for n in range(3):
        np.testing.assert_array_equal(tmac.matmul(qw, x[n], backend="reference"), y[n])


def test_matmul_equals_reference_function(qw):
    x = np.random.default_rng(2).standard_normal((2, 64)).astype(np.float32)
    expected = ref_lut.lut_matmul(qw.codes, qw.scales, qw.zeros, 2, x, 64, "int8")
    np.testing.assert_array_equal(tmac.matmul(qw, x, act_group_size=64, backend="reference"), expected)


def test_inputs_are_not_modified(qw):
    x = np.random.default_rng(3).standard_normal(64)
    x_before = x.copy()
    tmac.matmul(qw, x)
    np.testing.assert_array_equal(x, x_before)


def test_float64_and_float16_inputs_are_converted(qw):
    x = np.random.default_rng(4).standard_normal(64).astype(np.float16)
    np.testing.assert_array_equal(tmac.matmul(qw, x), tmac.matmul(qw, x.astype(np.float32)))
    np.testing.assert_array_equal(tmac.matmul(qw, x.astype(np.float64)),
                                  tmac.matmul(qw, x.astype(np.float32)))


def test_dequant_matmul_baseline_matches_dense(qw):
    x = np.random.default_rng(5).standard_normal(64).astype(np.float32)
    y = tmac.dequant_matmul(qw, x, backend="reference")
    np.testing.assert_allclose(y, qw.dequantize() @ x, rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 9), k=st.integers(1, 40), n=st.integers(1, 3), bits=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1))
def test_property_float_tables_match_dense_and_int8_is_close(m, k, n, bits, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, k)).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    qw = tmac.quantize(w, bits=bits, group_size=None)
    exact = x.astype(np.float64) @ qw.dequantize().astype(np.float64).T
    y_float = tmac.matmul(qw, x, backend="reference", lut="float32")
    np.testing.assert_allclose(y_float, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max() + 1e-6)
    y_int8 = tmac.matmul(qw, x, backend="reference")
    # each table entry is off by at most half a table step, scale = max|x-group| / 127
    step = np.abs(x).reshape(n, -1).sum(axis=1, keepdims=True) / 127
    budget = 0.5 * step * (np.abs(qw.dequantize()).sum(axis=1)[None, :] + 1) * 2
    assert (np.abs(y_int8 - exact) <= budget + 1e-4).all()


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 60).map(lambda q: 4 * q), seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e30]))
def test_property_mirrored_tables_bitwise_equal(k, seed, scale):
    x = (np.random.default_rng(seed).standard_normal((2, k)) * scale).astype(np.float32)
    np.testing.assert_array_equal(tables.build_tables(x).view(np.uint32),
                                  tables.build_tables_mirrored(x).view(np.uint32))


# ---- bad input: every error names the argument -------------------------------------------

W = np.ones((4, 64), np.float32)


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(w=np.ones((4, 64), np.int32)), TypeError, "w"),
    (dict(w=np.ones((4, 64), bool)), TypeError, "w"),
    (dict(w=np.ones((4, 64), complex)), TypeError, "w"),
    (dict(w=np.ones(64, np.float32)), ValueError, "w"),
    (dict(w=np.ones((4, 0), np.float32)), ValueError, "w"),
    (dict(w=np.array([[np.nan] * 4])), ValueError, "w"),
    (dict(w=np.array([[np.inf] * 4])), ValueError, "w"),
    (dict(w=np.array([[1e300] * 4])), ValueError, "float32"),
    (dict(w="weights"), TypeError, "w"),
    (dict(w=W, bits=9), ValueError, "bits"),
    (dict(w=W, bits=5, scheme="m0e4"), ValueError, "bits"),
    (dict(w=W, bits=0), ValueError, "bits"),
    (dict(w=W, bits=2.0), TypeError, "bits"),
    (dict(w=W, bits=True), TypeError, "bits"),
    (dict(w=W, group_size=48), ValueError, "valid choices"),
    (dict(w=W, group_size=6), ValueError, "group_size"),
    (dict(w=W, group_size=-32), ValueError, "group_size"),
    (dict(w=W, scheme="nf4"), ValueError, "scheme"),
])
def test_quantize_rejects(kwargs, error, name):
    with pytest.raises(error, match=name):
        tmac.quantize(**kwargs)


@pytest.mark.parametrize("x, kwargs, error, name", [
    (np.ones(63, np.float32), {}, ValueError, "K=64"),
    (np.ones((2, 65), np.float32), {}, ValueError, "K=64"),
    (np.ones((1, 2, 63), np.float32), {}, ValueError, "K=64"),
    (np.ones((0, 64), np.float32), {}, ValueError, "x"),
    (np.ones(64, np.int64), {}, TypeError, "x"),
    (np.full(64, np.nan, np.float32), {}, ValueError, "x"),
    (np.ones(64, np.float32), dict(backend="cuda"), ValueError, "backend"),
    (np.ones(64, np.float32), dict(lut="int4"), ValueError, "lut"),
    (np.ones(64, np.float32), dict(act_group_size=30), ValueError, "act_group_size"),
    (np.ones(64, np.float32), dict(act_group_size=48), ValueError, "act_group_size"),
    (np.ones(64, np.float32), dict(threads=0), ValueError, "threads"),
])
def test_matmul_rejects(qw, x, kwargs, error, name):
    with pytest.raises(error, match=name):
        tmac.matmul(qw, x, **kwargs)


def test_matmul_rejects_non_quantized_weight():
    with pytest.raises(TypeError, match="qw"):
        tmac.matmul(np.ones((4, 4), np.float32), np.ones(4, np.float32))
