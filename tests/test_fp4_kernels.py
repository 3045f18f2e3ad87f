"""FP4 through the API and the kernels: every backend equals its reference bit for bit."""

import numpy as np
import pytest

import tmac
from tmac.formats import QuantizedWeight
from tmac.reference import dequant_matmul as ref_dequant
from tmac.reference import e2m1, lut_matmul, m0e4
from tmac.registry import OPS

FP4_OPS = ("m0e4_dequant_matmul", "int4_dequant_matmul", "e2m1_dequant_matmul")


def bitwise_equal(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


# shapes: rows not a multiple of the 64-row tile, groups of 4 / 20 / 32 / the whole (odd) row
CASES = [(70, 100, 20, 3), (5, 36, 4, 1), (64, 64, 32, 2), (3, 9, None, 1)]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: "m%d_k%d_g%s_n%d" % c)
def case(request):
    m, k, group, n = request.param
    rng = np.random.default_rng(m * k)
    w = rng.laplace(size=(m, k)).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    return w, x, group


@pytest.mark.parametrize("op_name", FP4_OPS)
def test_fp4_ops_every_backend_equals_reference(op_name, case):
    w, x, group = case
    scheme = {"m0e4_dequant_matmul": "m0e4", "int4_dequant_matmul": "asym",
              "e2m1_dequant_matmul": "e2m1"}[op_name]
    qw = tmac.quantize(w, bits=4, group_size=group, scheme=scheme)
    op = OPS[op_name]
    want = op.implementation("reference")(qw, x)
    assert len(op.backends) > 1
    for backend in op.backends[1:]:
        for threads in (1, 2):
            assert bitwise_equal(op.implementation(backend)(qw, x, threads), want), (backend, threads)


def test_references_are_the_format_definitions(case):
    w, x, group = case
    qm = tmac.quantize(w, group_size=group, scheme="m0e4")
    qe = tmac.quantize(w, group_size=group, scheme="e2m1")
    qa = tmac.quantize(w, group_size=group, scheme="asym")
    a, b = qm.params
    assert bitwise_equal(OPS["m0e4_dequant_matmul"].reference(qm, x), m0e4.dequant_matmul(qm.codes, a, b, x))
    assert bitwise_equal(OPS["e2m1_dequant_matmul"].reference(qe, x), e2m1.dequant_matmul(qe.codes, qe.scales, x))
    assert bitwise_equal(OPS["int4_dequant_matmul"].reference(qa, x),
                         ref_dequant.dequant_matmul(qa.codes, qa.scales, qa.zeros, x))
    # and dequant_matmul is the left-to-right sum of the dequantized weights, close to numpy's
    for qw in (qm, qe):
        np.testing.assert_allclose(tmac.dequant_matmul(qw, x), x.astype(np.float64) @ qw.dequantize().T,
                                   rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("lut", ["int8", "float32"])
def test_m0e4_lut_path_every_backend_equals_reference_lut(case, lut):
    """M0E4 runs the ordinary LUT kernels with float zeros from affine_params."""
    w, x, group = case
    qw = tmac.quantize(w, group_size=group, scheme="m0e4")
    scales, zeros = m0e4.affine_params(*qw.params)
    assert bitwise_equal(qw.scales, scales) and bitwise_equal(qw.zeros, zeros)
    k = w.shape[1]
    act = qw.group_size if qw.group_size < k else -(-k // 4) * 4
    want = lut_matmul.lut_matmul(qw.codes, scales, zeros, 4, x, act, lut)
    for backend in OPS["lut_matmul"].backends:
        assert bitwise_equal(tmac.matmul(qw, x, backend=backend, lut=lut), want), backend
    # the LUT path computes the bit-trick weights' product up to float32 rounding of the affine form
    exact = x.astype(np.float64) @ qw.dequantize().astype(np.float64).T
    y = tmac.matmul(qw, x, lut="float32")
    np.testing.assert_allclose(y, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())


def test_e2m1_matmul_is_dequant_then_multiply(case):
    w, x, group = case
    qw = tmac.quantize(w, group_size=group, scheme="e2m1")
    want = e2m1.dequant_matmul(qw.codes, qw.scales, x)
    for backend in ("reference", "auto", *OPS["e2m1_dequant_matmul"].backends[1:]):
        assert bitwise_equal(tmac.matmul(qw, x, backend=backend), want)
    assert bitwise_equal(tmac.matmul(qw, x[0]), want[0])


def test_m0e4_decode_has_no_int_to_float_conversion():
    """The LLVM IR of the kernel's 64-weight step: bit operations and a bitcast, no sitofp/uitofp.
    (A fresh, uncached compile of the same inlined helpers the kernels use.)"""
    from numba import njit

    from tmac.kernels import fp4

    @njit
    def step_m0e4(pk, a, b, w):
        fp4.dequant_m0e4(pk, a, b, w)

    @njit
    def step_int4(pk, s, z, w):
        fp4.dequant_int4(pk, s, z, w)

    pk = np.arange(32, dtype=np.uint8) * 7
    a, b, w = np.ones(64, np.float32), np.zeros(64, np.float32), np.empty(64, np.float32)
    step_m0e4(pk, a, b, w)
    q = np.concatenate([pk & 15, pk >> 4])
    np.testing.assert_array_equal(w, 1 + q / 16)
    step_int4(pk, a, b, w)
    np.testing.assert_array_equal(w, q)
    ir_m0e4 = "".join(step_m0e4.inspect_llvm().values())
    ir_int4 = "".join(step_int4.inspect_llvm().values())
    assert "bitcast i32" in ir_m0e4
    assert "sitofp" not in ir_m0e4 and "uitofp" not in ir_m0e4
    assert "sitofp" in ir_int4 or "uitofp" in ir_int4          # the check would see a conversion


def test_kernel_bit_decoders_equal_reference_for_every_byte():
    """Both nibbles of all 256 bytes: the kernels' M0E4 and E2M1 decoders against the reference."""
    from numba import njit

    from tmac.kernels import fp4

    @njit
    def decode_all(out_m0e4, out_e2m1):
        for i in range(256):
            byte = np.uint8(i)
            out_m0e4[i, 0], out_m0e4[i, 1] = fp4.m0e4_low(byte), fp4.m0e4_high(byte)
            out_e2m1[i, 0], out_e2m1[i, 1] = fp4.e2m1_low(byte), fp4.e2m1_high(byte)

    got_m0e4, got_e2m1 = np.empty((256, 2), np.float32), np.empty((256, 2), np.float32)
    decode_all(got_m0e4, got_e2m1)
    nibbles = np.stack([np.arange(256) & 15, np.arange(256) >> 4], axis=1)
    assert bitwise_equal(got_m0e4, m0e4.decode(nibbles))
    assert bitwise_equal(got_e2m1, e2m1.decode(nibbles))          # -0.0 at code 8 included


def test_fp4_storage_and_display():
    w = np.random.default_rng(0).standard_normal((8, 128)).astype(np.float32)
    qm = tmac.quantize(w, group_size=32, scheme="m0e4")
    qe = tmac.quantize(w, group_size=32, scheme="e2m1")
    # the kernel layout (codes, the LUT form's scales and float zeros, rows padded to 64) + (a, b)
    assert qm.nbytes == 64 * 128 // 2 + 2 * 64 * 4 * 4 + 2 * 8 * 4 * 4
    assert qe.nbytes == 8 * 128 // 2 + 8 * 4 * 4                # codes + one scale per group
    assert "m0e4" in repr(qm) and "e2m1" in repr(qe)
    assert not qm.params[0].flags.writeable and not qm.params[1].flags.writeable


# ---- bad input --------------------------------------------------------------------------------

W = np.ones((4, 64), np.float32)


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(w=W, scheme="m0e4", bits=3, group_size=32), ValueError, "bits"),
    (dict(w=W, scheme="e2m1", bits=2, group_size=32), ValueError, "bits"),
    (dict(w=W, scheme="m0e4", group_size=48), ValueError, "group_size"),
    (dict(w=W, scheme="e2m1", group_size=6), ValueError, "group_size"),
    (dict(w=W * np.nan, scheme="m0e4"), ValueError, "w"),
    (dict(w=W, scheme="fp4"), ValueError, "scheme"),
])
def test_quantize_rejects(kwargs, error, name):
    with pytest.raises(error, match=name):
        tmac.quantize(**kwargs)


def test_quantized_weight_rejects_bad_fp4_parts():
    codes = np.zeros((2, 8), np.uint8)
    s = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match="params"):
        QuantizedWeight(codes, s, s, 4, 4, "m0e4")
    with pytest.raises(ValueError, match="params a"):
        QuantizedWeight(codes, s, s, 4, 4, "m0e4", params=(s * np.inf, s))
    with pytest.raises(ValueError, match="params a"):
        QuantizedWeight(codes, s, s, 4, 4, "m0e4", params=(s * 0, s))
    with pytest.raises(TypeError, match="params b"):
        QuantizedWeight(codes, s, s, 4, 4, "m0e4", params=(s, np.ones((2, 3), np.float32)))
    with pytest.raises(ValueError, match="params"):
        QuantizedWeight(codes, s, s, 4, 4, "e2m1", params=(s, s))
    with pytest.raises(ValueError, match="codes"):
        QuantizedWeight(codes + 16, s, s, 4, 4, "e2m1")
    with pytest.raises(ValueError, match="scales"):
        QuantizedWeight(codes, s * np.nan, s, 4, 4, "e2m1")
