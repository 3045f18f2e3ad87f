"""The reference against exact math: integer data where float32 makes no rounding error."""

import numpy as np
import pytest

from tmac.reference import bitplanes, dequant_matmul, lut_matmul, quantize, tables


def exact_case(rng, m, k, bits, group_size, n=3):
    """Codes, power-of-two scales, integer zeros and small-integer activations: every product
    and partial sum is an exact float32, so the LUT result must equal the float64 dense product."""
    codes = rng.integers(0, 2**bits, size=(m, k), dtype=np.uint8)
    n_groups = k // group_size
    scales = (2.0 ** rng.integers(-3, 3, size=(m, n_groups))).astype(np.float32)
    zeros = rng.integers(0, 2**bits, size=(m, n_groups)).astype(np.float32)
    x = rng.integers(-8, 9, size=(n, k)).astype(np.float32)
    dense = (codes.astype(np.float64) - np.repeat(zeros, group_size, axis=1)) * np.repeat(
        scales, group_size, axis=1)
    return codes, scales, zeros, x, x.astype(np.float64) @ dense.T


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("k, group_size", [(64, 32), (64, 64), (10, 10), (96, 32)])
def test_float_tables_equal_dense_product_exactly(bits, k, group_size):
    rng = np.random.default_rng(bits * 100 + k)
    codes, scales, zeros, x, expected = exact_case(rng, 7, k, bits, group_size)
    for act in (4, 32, 1 << 20):
        if max(act, group_size) % min(act, group_size) and max(act, group_size) < k:
            continue
        y = lut_matmul.lut_matmul(codes, scales, zeros, bits, x, act, lut="float32")
        np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(dequant_matmul.dequant_matmul(codes, scales, zeros, x), expected)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_int8_integer_sums_are_exact_when_table_scale_is_one(bits):
    """With every activation group's largest |x0|+|x1|+|x2|+|x3| equal to 127 the table scale is
    exactly 1, so qT = T and P = sum_i 2^i sum_g T[idx_i] = sum_k (2*code_k - (2^b - 1)) * x_k."""
    rng = np.random.default_rng(bits)
    m, k = 5, 64
    codes = rng.integers(0, 2**bits, size=(m, k), dtype=np.uint8)
    x = rng.integers(-20, 21, size=(2, k))
    x[:, :4] = [40, -30, 27, 30]                                  # absum 127 in act group 0
    x[:, 32:36] = [-100, 20, 5, 2]                                # absum 127 in act group 1
    x = x.astype(np.float32)
    blocks = lut_matmul.make_blocks(k, 32, 32)
    qtables, table_scales = tables.quantize_tables(tables.build_tables(x), x, 32)
    np.testing.assert_array_equal(table_scales, np.ones((2, 2), np.float32))
    indices = lut_matmul.table_indices(codes, bits, k)
    sums = lut_matmul.integer_sums(lut_matmul.plane_sums(qtables, indices, blocks))
    signed_codes = 2 * codes.astype(np.int64) - (2**bits - 1)
    for b, (lo, hi) in enumerate(zip(blocks.start, blocks.stop)):
        expected = x[:, lo:hi].astype(np.int64) @ signed_codes[:, lo:hi].T
        np.testing.assert_array_equal(sums[:, :, b], expected)


def test_table_entries_for_all_16_index_patterns():
    x = np.array([[1, 10, 100, 1000]], dtype=np.float32)
    t = tables.build_tables(x)[0, 0]
    for j in range(16):
        expected = sum((1 if j >> bit & 1 else -1) * x[0, bit] for bit in range(4))
        assert t[j] == expected


def test_mirrored_tables_bitwise_equal_plain():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 400)) * 10.0 ** rng.integers(-20, 20, size=(3, 400))).astype(np.float32)
    x[0, :8] = [0.0, -0.0, 0.0, 0.0, -0.0, -0.0, -0.0, -0.0]
    plain, mirrored = tables.build_tables(x), tables.build_tables_mirrored(x)
    np.testing.assert_array_equal(plain.view(np.uint32), mirrored.view(np.uint32))
    np.testing.assert_array_equal(plain[..., ::-1], -plain)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_all_codes_split_combine_and_sign_identity(bits):
    codes = np.arange(2**bits, dtype=np.uint8)[None, :]
    planes = bitplanes.split(codes, bits)
    np.testing.assert_array_equal(bitplanes.combine(planes), codes)
    signs = bitplanes.signs(planes).astype(np.float64)
    rebuilt = sum(2.0 ** (i - 1) * signs[i] for i in range(bits)) + (2**bits - 1) / 2
    np.testing.assert_array_equal(rebuilt, codes.astype(np.float64))


def test_group_indices_take_bit_t_from_column_t():
    planes = np.array([[[1, 0, 1, 1, 0, 0, 0, 1]]], dtype=np.uint8)
    np.testing.assert_array_equal(bitplanes.group_indices(planes), [[[0b1101, 0b1000]]])


def test_table_quantization_scale_rounding_and_saturation():
    x = np.array([[1.0, -2.0, 0.5, 0.25, 0.1, 0.1, 0.1, 0.1]], dtype=np.float32)
    t = tables.build_tables(x)
    q, s = tables.quantize_tables(t, x, 8)
    assert s[0, 0] == np.float32(3.75) / np.float32(127)
    inv = np.float32(1) / s[0, 0]
    np.testing.assert_array_equal(q, np.clip(np.rint(t * inv), -127, 127).astype(np.int8))
    assert q.min() >= -127 and q.max() <= 127
    np.testing.assert_array_equal(q[..., ::-1], -q)
    zero_q, zero_s = tables.quantize_tables(np.zeros((1, 2, 16), np.float32), np.zeros((1, 8), np.float32), 8)
    assert zero_s[0, 0] == 0 and not zero_q.any()


def test_table_rounding_is_half_to_even():
    """x = (0.5, 0.25, 0.25, 126): |x| sums to 127 so the table scale is exactly 1, and some
    entries are exact halves: 126.5 (j = 0b1101) and 125.5 (j = 0b1100) both round to 126."""
    x = np.array([[0.5, 0.25, 0.25, 126.0]], dtype=np.float32)
    t = tables.build_tables(x)
    q, s = tables.quantize_tables(t, x, 4)
    assert s[0, 0] == 1
    assert t[0, 0, 0b1101] == 126.5 and q[0, 0, 0b1101] == 126
    assert t[0, 0, 0b1100] == 125.5 and q[0, 0, 0b1100] == 126
    assert t[0, 0, 0b0010] == -126.5 and q[0, 0, 0b0010] == -126


def test_padding_k_not_multiple_of_4_contributes_nothing():
    rng = np.random.default_rng(5)
    codes, scales, zeros, x, expected = exact_case(rng, 4, 10, 3, 10)
    padded_codes = np.pad(codes, ((0, 0), (0, 2)), constant_values=7)   # any padding code
    y = lut_matmul.lut_matmul(codes, scales, zeros, 3, x, 1 << 20, lut="float32")
    np.testing.assert_array_equal(y, expected)
    assert lut_matmul.padded_k(10) == 12 and padded_codes.shape[1] == 12


def test_blocks_nest_weight_and_activation_groups():
    b = lut_matmul.make_blocks(128, 32, 64)
    assert b.width == 32 and list(b.weight_group) == [0, 1, 2, 3] and list(b.act_group) == [0, 0, 1, 1]
    b = lut_matmul.make_blocks(100, 100, 32)
    assert list(b.start) == [0, 32, 64, 96] and list(b.stop) == [32, 64, 96, 100]
    with pytest.raises(ValueError, match="nest"):
        lut_matmul.make_blocks(192, 64, 96)


def test_dequantize_formula():
    codes = np.array([[0, 3, 1, 2]], dtype=np.uint8)
    w = quantize.dequantize(codes, np.array([[0.5, 2.0]], np.float32), np.array([[1, 2]], np.float32))
    np.testing.assert_array_equal(w, [[-0.5, 1.0, -2.0, 0.0]])
