"""FP4 formats (tmac/reference/m0e4.py, tmac/reference/e2m1.py) against exact math and ml_dtypes.

Every one of the 16 codes of both formats is checked: bit patterns from the IEEE layouts written
out by hand here, values from the formulas, and E2M1 against ml_dtypes' float4_e2m1fn.
"""

import numpy as np
import pytest

from tmac.reference import e2m1, lut_matmul, m0e4

ALL_CODES = np.arange(16, dtype=np.uint8)

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - the test extra installs it
    ml_dtypes = None
needs_ml_dtypes = pytest.mark.skipif(ml_dtypes is None, reason="ml_dtypes not installed")


# ---- M0E4: all 16 codes ----------------------------------------------------------------------

@pytest.mark.parametrize("q", range(16))
def test_m0e4_code_bit_patterns_and_values(q):
    # fp16: sign 0, exponent 01111 (= bias, 2^0), mantissa q3 q2 q1 q0 0 0 0 0 0 0
    fp16_bits = int("0" + "01111" + format(q, "04b") + "000000", 2)
    # float32: sign 0, exponent 01111111, mantissa q3 q2 q1 q0 followed by 19 zeros
    fp32_bits = int("0" + "01111111" + format(q, "04b") + "0" * 19, 2)
    assert m0e4.encode_fp16_bits(np.uint8(q)) == fp16_bits
    assert m0e4.encode_fp32_bits(np.uint8(q)) == fp32_bits
    exact = 1.0 + q / 16.0
    decoded = m0e4.decode(np.array([q], np.uint8))
    assert decoded.dtype == np.float32 and decoded[0] == exact
    # independent decoders: numpy's own float16 and float32 bit interpretation
    assert np.array([fp16_bits], np.uint16).view(np.float16)[0] == exact
    assert np.array([fp32_bits], np.uint32).view(np.float32)[0] == exact


def test_m0e4_fp16_and_fp32_tricks_agree_bitwise_for_all_codes():
    widened = m0e4.encode_fp16_bits(ALL_CODES).view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(widened.view(np.uint32), m0e4.encode_fp32_bits(ALL_CODES))


def test_m0e4_dequantize_is_two_roundings_in_float32():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (6, 64), dtype=np.uint8)
    a = rng.uniform(0.01, 3, (6, 2)).astype(np.float32)
    b = rng.standard_normal((6, 2)).astype(np.float32)
    v = 1 + codes / 16.0                                                 # exact in float64
    ar, br = np.repeat(a, 32, axis=1), np.repeat(b, 32, axis=1)
    # float64 product of two float32 is exact, so rounding it once to float32 is v*a in float32
    expected = (np.float32(v * ar.astype(np.float64)).astype(np.float64) + br).astype(np.float32)
    np.testing.assert_array_equal(m0e4.dequantize(codes, a, b), expected)


@pytest.mark.parametrize("fit", m0e4.FITS)
def test_m0e4_minmax_levels_span_group_range(fit):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 128)).astype(np.float32)
    codes, a, b = m0e4.quantize(w, 32, fit)
    assert codes.dtype == np.uint8 and codes.max() <= 15 and (a > 0).all()
    np.testing.assert_array_equal(a / np.float32(16) * np.float32(16), a)   # scale a/16 exact
    restored = m0e4.dequantize(codes, a, b)
    if fit == "minmax":
        g = w.reshape(8, 4, 32)
        step = (g.max(-1) - g.min(-1)) / 15
        # inside the range every weight is within half a step (plus float32 slack)
        err = np.abs(restored - w).reshape(8, 4, 32)
        assert (err <= step[..., None] * (0.5 + 1e-4)).all()
        # the extreme levels hit min and max (to float32 rounding)
        np.testing.assert_allclose(m0e4.dequantize(np.zeros_like(codes), a, b)[:, ::32], g.min(-1),
                                   rtol=1e-6, atol=1e-6)


def test_m0e4_lsq_never_worse_than_minmax_per_group():
    rng = np.random.default_rng(2)
    w = rng.laplace(size=(16, 256)).astype(np.float32)
    errors = {}
    for fit in m0e4.FITS:
        codes, a, b = m0e4.quantize(w, 64, fit)
        errors[fit] = ((m0e4.dequantize(codes, a, b).astype(np.float64) - w) ** 2).reshape(16, 4, 64).sum(-1)
    assert (errors["lsq"] <= errors["minmax"]).all()
    assert errors["lsq"].sum() < 0.95 * errors["minmax"].sum()          # it does find better fits


def test_m0e4_constant_groups_are_exact():
    w = np.array([[3.0] * 4 + [0.0] * 4 + [-2.5] * 4], np.float32)
    for fit in m0e4.FITS:
        codes, a, b = m0e4.quantize(w, 4, fit)
        np.testing.assert_array_equal(m0e4.dequantize(codes, a, b), w)


def test_m0e4_affine_params_exact_case_lut_equals_bit_trick_product():
    """With a = 16 * 2^e, b integer and small-integer activations every step is exact, so the
    LUT path (scale a/16, float zero) and the bit-trick dense product agree exactly."""
    rng = np.random.default_rng(3)
    m, k, group = 5, 64, 32
    codes = rng.integers(0, 16, (m, k), dtype=np.uint8)
    a = (16 * 2.0 ** rng.integers(-2, 2, (m, 2))).astype(np.float32)
    b = rng.integers(-20, 5, (m, 2)).astype(np.float32)
    x = rng.integers(-8, 9, (3, k)).astype(np.float32)
    scales, zeros = m0e4.affine_params(a, b)
    np.testing.assert_array_equal(scales, a / 16)
    np.testing.assert_array_equal(zeros, -(a + b) / (a / 16))
    dense = m0e4.dequantize(codes, a, b).astype(np.float64)
    np.testing.assert_array_equal(dense, np.repeat(a, group, 1) * (1 + codes / 16) + np.repeat(b, group, 1))
    expected = x.astype(np.float64) @ dense.T
    y = lut_matmul.lut_matmul(codes, scales, zeros, 4, x, group, lut="float32")
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(m0e4.dequant_matmul(codes, a, b, x), expected)


def test_m0e4_affine_params_close_to_bit_trick_in_general():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((8, 128)).astype(np.float32)
    codes, a, b = m0e4.quantize(w, 32)
    scales, zeros = m0e4.affine_params(a, b)
    affine = (codes.astype(np.float64) - np.repeat(zeros, 32, 1)) * np.repeat(scales, 32, 1)
    np.testing.assert_allclose(affine, m0e4.dequantize(codes, a, b), rtol=0, atol=1e-5)


# ---- E2M1: all 16 codes ----------------------------------------------------------------------

# value of each code from the OCP table: sign | exponent (2 bits) | mantissa (1 bit)
OCP_E2M1 = {0b0000: 0.0, 0b0001: 0.5, 0b0010: 1.0, 0b0011: 1.5,
            0b0100: 2.0, 0b0101: 3.0, 0b0110: 4.0, 0b0111: 6.0}


@pytest.mark.parametrize("code", range(16))
def test_e2m1_code_values(code):
    expected = OCP_E2M1[code & 7] * (-1 if code & 8 else 1)
    value = e2m1.decode(np.array([code]))[0]
    assert value == expected and np.signbit(value) == bool(code & 8)


@needs_ml_dtypes
def test_e2m1_all_codes_match_ml_dtypes():
    theirs = ALL_CODES.view(ml_dtypes.float4_e2m1fn).astype(np.float32)
    np.testing.assert_array_equal(e2m1.decode(ALL_CODES).view(np.uint32), theirs.view(np.uint32))
    # encoding every representable value gives its code back (signed zeros included)
    np.testing.assert_array_equal(e2m1.round_to_codes(theirs), ALL_CODES)


@needs_ml_dtypes
def test_e2m1_rounding_matches_ml_dtypes_ties_saturation_and_random():
    ties = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], np.float32)
    special = np.array([0.0, -0.0, 1e-30, -1e-30, 6.0, 6.5, 7.0, 1e30, 3.4e38], np.float32)
    nudged = np.concatenate([np.nextafter(ties, 0), np.nextafter(ties, 10)]).astype(np.float32)
    rng = np.random.default_rng(5)
    random = (rng.standard_normal(20000) * 4).astype(np.float32)
    r = np.concatenate([ties, special, nudged, random])
    r = np.concatenate([r, -r])
    np.testing.assert_array_equal(e2m1.round_to_codes(r), r.astype(ml_dtypes.float4_e2m1fn).view(np.uint8))


def test_e2m1_ties_go_to_the_even_code():
    ties = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], np.float32)
    np.testing.assert_array_equal(e2m1.round_to_codes(ties), [0, 2, 2, 4, 4, 6, 6])
    np.testing.assert_array_equal(e2m1.round_to_codes(-ties), [8, 10, 10, 12, 12, 14, 14])
    np.testing.assert_array_equal(e2m1.round_to_codes(np.float32([6.1, 1e9, -1e9])), [7, 7, 15])


@pytest.mark.parametrize("rule", e2m1.SCALE_RULES)
def test_e2m1_group_quantization_is_nearest_value(rule):
    rng = np.random.default_rng(6)
    w = rng.standard_normal((8, 128)).astype(np.float32)
    codes, scales = e2m1.quantize(w, 64, rule)
    ratio = w.reshape(8, 2, 64) / scales[..., None]
    grid = e2m1.VALUES.astype(np.float64)
    restored = e2m1.decode(codes).reshape(8, 2, 64).astype(np.float64)
    # no representable value is strictly closer than the chosen one
    best = np.abs(ratio[..., None] - grid).min(-1)
    np.testing.assert_allclose(np.abs(ratio - restored), best, rtol=0, atol=0)
    if rule == "absmax":
        np.testing.assert_allclose(np.abs(w).reshape(8, 2, 64).max(-1) / 6, scales, rtol=1e-7)
    else:
        e = np.log2(scales)
        assert (e == np.round(e)).all()
        assert ((np.abs(ratio).max(-1) >= 4) & (np.abs(ratio).max(-1) < 8)).all()
    np.testing.assert_array_equal(e2m1.dequantize(codes, scales),
                                  (e2m1.decode(codes).reshape(8, 2, 64) * scales[..., None]).reshape(8, 128))


def test_e2m1_all_zero_group_gets_scale_one():
    codes, scales = e2m1.quantize(np.zeros((2, 8), np.float32), 4)
    assert (scales == 1).all() and (codes == 0).all()


def test_e2m1_dequant_matmul_exact_case():
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 16, (4, 32), dtype=np.uint8)
    scales = (2.0 ** rng.integers(-2, 3, (4, 2))).astype(np.float32)
    x = rng.integers(-8, 9, (2, 32)).astype(np.float32)
    dense = np.array([[OCP_E2M1[c & 7] * (-1 if c & 8 else 1) for c in row] for row in codes])
    dense *= np.repeat(scales, 16, 1)
    np.testing.assert_array_equal(e2m1.dequant_matmul(codes, scales, x), x.astype(np.float64) @ dense.T)


# ---- bad input --------------------------------------------------------------------------------

GOOD_CODES = np.zeros((2, 8), np.uint8)
GOOD = np.ones((2, 2), np.float32)


@pytest.mark.parametrize("call, error, name", [
    (lambda: m0e4.decode(np.array([16])), ValueError, "codes"),
    (lambda: m0e4.decode(np.array([-1])), ValueError, "codes"),
    (lambda: m0e4.encode_fp16_bits(np.array([0.5])), TypeError, "codes"),
    (lambda: e2m1.decode(np.array([255], np.uint8)), ValueError, "codes"),
    (lambda: m0e4.dequantize(GOOD_CODES + 16, GOOD, GOOD), ValueError, "codes"),
    (lambda: m0e4.dequantize(GOOD_CODES, GOOD * np.nan, GOOD), ValueError, "a"),
    (lambda: m0e4.dequantize(GOOD_CODES, GOOD, GOOD * np.inf), ValueError, "b"),
    (lambda: m0e4.dequantize(GOOD_CODES, np.ones((2, 3), np.float32), GOOD), ValueError, "a"),
    (lambda: m0e4.dequantize(GOOD_CODES, np.ones((2, 2), np.int32), GOOD), TypeError, "a"),
    (lambda: m0e4.affine_params(GOOD * 0, GOOD), ValueError, "a"),
    (lambda: e2m1.dequantize(GOOD_CODES, GOOD * np.inf), ValueError, "scales"),
    (lambda: e2m1.dequantize(GOOD_CODES, np.ones((2, 3), np.float32)), ValueError, "scales"),
    (lambda: m0e4.quantize(np.ones((2, 8), np.float32), 3), ValueError, "group_size"),
    (lambda: m0e4.quantize(np.ones((2, 8), np.float32), 4.0), TypeError, "group_size"),
    (lambda: m0e4.quantize(np.ones((2, 8), np.float32), 4, fit="mse"), ValueError, "fit"),
    (lambda: e2m1.quantize(np.ones((2, 8), np.float32), 16), ValueError, "group_size"),
    (lambda: e2m1.quantize(np.ones((2, 8), np.float32), 4, rule="e8m0"), ValueError, "rule"),
    (lambda: e2m1.round_to_codes(np.float32([np.nan])), ValueError, "finite"),
])
def test_bad_input_names_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()
