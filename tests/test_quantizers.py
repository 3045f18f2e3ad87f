"""Quantizers against their formulas, hand-made cases and error bounds."""

import numpy as np
import pytest

import tmac
from tmac.reference import quantize


def test_asym_hand_made():
    codes, scales, zeros = quantize.quantize_asym(np.array([[-1, 0, 1, 2]], np.float32), 2, 4)
    assert scales[0, 0] == 1 and zeros[0, 0] == 1
    np.testing.assert_array_equal(codes, [[0, 1, 2, 3]])
    codes, scales, zeros = quantize.quantize_asym(np.array([[0, 1, 2, 3, 0, 0, 0, 0]], np.float32), 2, 4)
    np.testing.assert_array_equal(codes, [[0, 1, 2, 3, 0, 0, 0, 0]])
    np.testing.assert_array_equal(scales, [[1, 1]])          # all-zero group: scale 1, code = zero
    np.testing.assert_array_equal(zeros, [[0, 0]])


def test_asym_constant_positive_group_is_exact():
    codes, scales, zeros = quantize.quantize_asym(np.full((1, 4), 3.0, np.float32), 4, 4)
    np.testing.assert_array_equal(quantize.dequantize(codes, scales, zeros), np.full((1, 4), 3.0))


def test_sym_hand_made():
    codes, scales, zeros = quantize.quantize_sym(np.array([[-4, -2, 0, 2]], np.float32), 2, 4)
    assert scales[0, 0] == 2 and zeros[0, 0] == 2
    np.testing.assert_array_equal(codes, [[0, 1, 2, 3]])
    codes, scales, _ = quantize.quantize_sym(np.array([[8, -6, 1, 0]], np.float32), 4, 4)
    assert scales[0, 0] == -1                                 # largest magnitude 8 maps to code 0
    np.testing.assert_array_equal(codes, [[0, 14, 7, 8]])


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("scheme", ["asym", "sym"])
def test_reconstruction_within_half_a_step_inside_the_range(bits, scheme):
    rng = np.random.default_rng(bits)
    w = rng.standard_normal((16, 128)).astype(np.float32)
    codes, scales, zeros = quantize.quantize(w, bits, 32, scheme)
    error = np.abs(quantize.dequantize(codes, scales, zeros) - w).reshape(16, 4, 32)
    step = np.abs(scales)[..., None]
    position = w.reshape(16, 4, 32) / scales[..., None] + zeros[..., None]
    inside = (position >= -0.5) & (position <= 2**bits - 0.5)
    assert inside.mean() > 0.5          # the range search clips the tails, most at 1 bit
    assert (error[inside] <= step.repeat(32, -1)[inside] * (0.5 + 1e-5)).all()


def test_ternary_codes_and_scale():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 64)).astype(np.float32)
    codes, scales, zeros = quantize.quantize_ternary(w)
    assert set(np.unique(codes)) <= {1, 2, 3}
    np.testing.assert_allclose(scales, np.abs(w).mean(), rtol=1e-6)
    expected = np.clip(np.rint(w / scales[0, 0]), -1, 1) + 2
    np.testing.assert_array_equal(codes, expected)
    np.testing.assert_array_equal(zeros, 2)
    tiny = quantize.quantize_ternary(np.zeros((2, 4), np.float32))
    assert tiny[1][0, 0] == np.float32(1e-5) and (tiny[0] == 2).all()


def test_quantize_api_matches_reference_and_is_immutable():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 64)).astype(np.float64)
    before = w.copy()
    qw = tmac.quantize(w, bits=3, group_size=32, scheme="asym")
    np.testing.assert_array_equal(w, before)
    codes, scales, zeros = quantize.quantize_asym(w.astype(np.float32), 3, 32)
    np.testing.assert_array_equal(qw.codes, codes)
    np.testing.assert_array_equal(qw.scales, scales)
    assert qw.shape == (6, 64) and qw.n_groups == 2 and qw.bits == 3
    with pytest.raises(ValueError):
        qw.codes[0, 0] = 1
    with pytest.raises(AttributeError):
        qw.bits = 4
    np.testing.assert_array_equal(qw.dequantize(), quantize.dequantize(codes, scales, zeros))


def test_group_size_row_and_ternary_shape():
    w = np.ones((3, 20), np.float32)
    assert tmac.quantize(w, group_size=None).group_size == 20
    assert tmac.quantize(w, group_size="row").n_groups == 1
    t = tmac.quantize(w, scheme="ternary")
    assert (t.bits, t.group_size, t.scales.shape) == (2, 20, (3, 1))


def test_repr_and_rich_display():
    qw = tmac.quantize(np.ones((64, 128), np.float32), bits=2, group_size=32, scheme="sym")
    text = repr(qw)
    assert "bits=2" in text and "group_size=32" in text and "(64, 128)" in text
    # 2 bits per code + a float32 scale and the uint8 zero the kernels read per 32 weights
    assert qw.bits_per_weight == 3.25 and qw.compression == pytest.approx(32 / 3.25)
    from rich.console import Console

    console = Console(record=True, width=100)
    console.print(qw)
    rendered = console.export_text()
    assert "9.8x smaller" in rendered and "group size" in rendered
    assert "<table>" in qw._repr_html_()
