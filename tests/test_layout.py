"""tmac.layout: pack/unpack round trip and the documented index formula (docs/layout.md)."""
import numpy as np
import pytest

from tmac import layout

SHAPES = [(1, 1), (1, 4), (5, 12), (33, 100), (64, 16), (65, 17), (130, 77), (192, 576)]


def _index(codes, m, g, i):
    """idx_i(m, g) = sum_t bit_i(codes[m, 4g + t]) << t, zero outside the codes."""
    rows, cols = codes.shape
    if m >= rows:
        return 0
    return sum((((int(codes[m, 4 * g + t]) if 4 * g + t < cols else 0) >> i) & 1) << t
               for t in range(4))


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", SHAPES)
def test_unpack_inverts_pack(bits, shape):
    codes = np.random.default_rng(bits).integers(0, 2**bits, shape).astype(np.uint8)
    packed = layout.pack(codes, bits)
    assert packed.data.dtype == np.uint8 and packed.data.flags.c_contiguous
    assert packed.data.shape == (-(-shape[0] // 64), max(1, -(-shape[1] // 16)), bits, 2, 64)
    np.testing.assert_array_equal(layout.unpack(packed), codes)


def test_every_byte_follows_the_formula():
    codes = np.random.default_rng(7).integers(0, 16, (70, 40)).astype(np.uint8)
    data = layout.pack(codes, 4).data
    tiles, units, bits = data.shape[:3]
    for tile in range(tiles):
        for u in range(units):
            for i in range(bits):
                for s in range(2):
                    for r in range(16):
                        for q in range(4):
                            m, g = 64 * tile + 32 * s + r, 4 * u + q
                            want = _index(codes, m, g, i) | _index(codes, m + 16, g, i) << 4
                            assert data[tile, u, i, s, 4 * r + q] == want


def test_layout_does_not_depend_on_anything_but_codes():
    codes = np.random.default_rng(3).integers(0, 4, (100, 50)).astype(np.uint8)
    a, b = layout.pack(codes, 2), layout.pack(codes.copy(), 2)
    assert np.array_equal(a.data, b.data)


def test_scales_are_transposed_per_64_rows():
    rng = np.random.default_rng(1)
    scales = rng.random((70, 3)).astype(np.float32)
    zeros = rng.random((70, 3)).astype(np.float32)        # fractional: kept as float32
    sc, zt = layout.pack_params(scales, zeros)
    assert sc.shape == zt.shape == (2, 3, 64) and zt.dtype == np.float32
    for m in (0, 13, 63, 64, 69):
        np.testing.assert_array_equal(sc[m // 64, :, m % 64], scales[m])
        np.testing.assert_array_equal(zt[m // 64, :, m % 64], zeros[m])
    assert not sc[1, :, 6:].any()
    p = layout.pack(rng.integers(0, 8, (70, 12)).astype(np.uint8), 3, scales, zeros)
    back = layout.params_from(p)
    assert np.array_equal(back[0], scales) and np.array_equal(back[1], zeros)


def test_integer_zeros_are_kept_as_uint8():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 8, (70, 64)).astype(np.uint8)
    scales = rng.random((70, 2)).astype(np.float32)
    zeros = rng.integers(0, 8, (70, 2)).astype(np.float32)
    zeros[5, 1] = -0.0
    p = layout.pack(codes, 3, scales, zeros)
    assert p.zeros_t.dtype == np.uint8 and p.zeros_t.shape == p.scales_t.shape
    np.testing.assert_array_equal(layout.params_from(p)[1], np.abs(zeros))
    assert p.form == "zero_point"
    for bad in (0.5, -1.0, 256.0, np.nan):
        z = zeros.copy()
        z[3, 0] = bad
        assert layout.pack(codes, 3, scales, z).zeros_t.dtype == np.float32


def test_affine_parameters_are_stored_as_float16_bits():
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, (70, 64)).astype(np.uint8)
    scales = rng.random((70, 2)).astype(np.float16).astype(np.float32)
    offsets = rng.standard_normal((70, 2)).astype(np.float16).astype(np.float32)
    p = layout.pack(codes, 8, scales, offsets, form="affine")
    assert p.form == "affine" and p.scales_t.dtype == p.zeros_t.dtype == np.uint16
    back = layout.params_from(p)
    assert np.array_equal(back[0], scales) and np.array_equal(back[1], offsets)
    assert p.nbytes == p.data.nbytes + 2 * p.scales_t.nbytes
    assert np.array_equal(layout.unpack(p), codes)
    with pytest.raises(ValueError, match="float16"):
        layout.pack(codes, 8, scales + np.float32(1e-4), offsets, form="affine")


@pytest.mark.parametrize("bad", [np.zeros((2, 2), np.int32), np.full((2, 2), 4, np.uint8)])
def test_pack_rejects_bad_codes(bad):
    with pytest.raises(ValueError):
        layout.pack(bad, 2)
