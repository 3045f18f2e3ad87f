"""fit="hqq" (tmac.reference.affine.hqq): its lp objective never rises, it beats round to nearest
on every matrix, and it gives ordinary affine weights that the kernels run bit for bit."""

import argparse

import numpy as np
import pytest

import tmac
from tmac.model import formats, store
from tmac.model.cli import add_model_arguments
from tmac.reference import affine
from tmac.reference.quantize import group_view


def matrix(kind, seed, m=8, k=128):
    rng = np.random.default_rng(seed)
    if kind == "normal":
        w = rng.standard_normal((m, k)) * 0.02
    elif kind == "student_t":                          # heavy tails: a few large weights per row
        w = rng.standard_t(2, (m, k)) * 0.02
    else:                                              # laplace, shifted per row
        w = rng.laplace(size=(m, k)) * 0.05 + rng.standard_normal((m, 1)) * 0.1
    return w.astype(np.float32)


CASES = [(kind, seed, bits, group)
         for kind in ("normal", "student_t", "laplace") for seed in (0, 1, 2)
         for bits in (2, 3, 4) for group in (32, 64)]


def lp_error(w, codes, scales, offsets, p=affine.HQQ_P):
    """sum |w - dequantize|^p per group, float64, from the dequantized weights."""
    r = affine.dequantize(codes, scales, offsets).astype(np.float64) - w
    return (np.abs(group_view(r, w.shape[1] // scales.shape[1])) ** p).sum(axis=-1)


def squared_error(w, codes, scales, offsets):
    return float(((affine.dequantize(codes, scales, offsets).astype(np.float64) - w) ** 2).sum())


@pytest.mark.parametrize("kind, seed, bits, group", CASES)
def test_objective_never_rises_and_beats_round_to_nearest(kind, seed, bits, group):
    w = matrix(kind, seed)
    codes, scales, offsets, history = affine.hqq(w, bits, group)
    assert history.shape == (affine.HQQ_ITERATIONS + 1,)
    assert np.all(np.diff(history) <= 0)                          # non-increasing
    ours = lp_error(w, codes, scales, offsets)
    np.testing.assert_allclose(history[-1], ours.sum(), rtol=1e-5)  # the history measures the result
    rtn = lp_error(w, *affine.quantize(w, bits, group, fit="minmax"))
    np.testing.assert_allclose(history[0], rtn.sum(), rtol=1e-5)   # iteration 0 is minmax
    assert np.all(ours <= rtn * (1 + 1e-5))                       # no group worse than RTN
    assert ours.sum() < rtn.sum()                                 # and the matrix strictly better
    assert squared_error(w, codes, scales, offsets) < squared_error(
        w, *affine.quantize(w, bits, group, fit="minmax"))


@pytest.mark.parametrize("kind, seed, bits, group", CASES[::5])
def test_outputs_are_ordinary_affine_weights(kind, seed, bits, group):
    w = matrix(kind, seed)
    codes, scales, offsets = affine.quantize(w, bits, group, fit="hqq")
    assert codes.dtype == np.uint8 and codes.shape == w.shape and codes.max() < 2**bits
    for p in (scales, offsets):
        assert p.dtype == np.float32 and p.shape == (w.shape[0], w.shape[1] // group)
        np.testing.assert_array_equal(p.astype(np.float16).astype(np.float32), p)
    assert (scales >= 0).all()
    nearest = affine._nearest_codes(group_view(w, group).astype(np.float64), scales.astype(np.float64),
                                    offsets.astype(np.float64), 2**bits)
    np.testing.assert_array_equal(nearest.reshape(w.shape), codes)    # codes: the nearest levels


def test_chunking_does_not_change_the_result(monkeypatch):
    w = matrix("student_t", 7, m=10, k=64)
    whole = affine.hqq(w, 3, 32)
    monkeypatch.setattr(affine, "HQQ_CHUNK", 150)                   # 2 rows at a time
    parts = affine.hqq(w, 3, 32)
    for a, b in zip(whole[:3], parts[:3]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(whole[3], parts[3], rtol=1e-12)


def test_constant_and_zero_groups_are_exact():
    w = np.zeros((2, 64), np.float32)
    w[1, 32:] = 0.25
    codes, scales, offsets, history = affine.hqq(w, 2, 32)
    np.testing.assert_array_equal(affine.dequantize(codes, scales, offsets), w)
    assert np.all(history == 0)


def test_quantize_fit_hqq_runs_the_kernels_bit_exact():
    w = matrix("student_t", 3, m=24, k=128)
    x = np.random.default_rng(4).standard_normal((3, 128)).astype(np.float32)
    qw = tmac.quantize(w, bits=3, group_size=32, scheme="affine", fit="hqq")
    codes, scales, offsets = affine.quantize(w, 3, 32, fit="hqq")
    np.testing.assert_array_equal(qw.codes, codes)
    np.testing.assert_array_equal(qw.scales, scales)
    np.testing.assert_array_equal(qw.zeros, offsets)
    np.testing.assert_array_equal(tmac.matmul(qw, x), tmac.matmul(qw, x, backend="reference"))


def test_quantize_fit_choices_and_errors():
    w = matrix("normal", 0, k=64)
    default = tmac.quantize(w, bits=3, group_size=32, scheme="affine")
    lsq = tmac.quantize(w, bits=3, group_size=32, scheme="affine", fit="lsq")
    np.testing.assert_array_equal(default.codes, lsq.codes)
    np.testing.assert_array_equal(default.scales, lsq.scales)
    with pytest.raises(ValueError, match="fit must be one of 'lsq', 'minmax', 'hqq'"):
        tmac.quantize(w, bits=3, group_size=32, scheme="affine", fit="awq")
    with pytest.raises(ValueError, match="fit does not apply to scheme 'asym'"):
        tmac.quantize(w, bits=3, group_size=32, scheme="asym", fit="hqq")
    tmac.quantize(w, bits=3, group_size=32, scheme="asym", fit=None)
    with pytest.raises(ValueError, match="fit must be one of 'lsq', 'minmax' for scheme 'm0e4'"):
        tmac.quantize(w, bits=4, group_size=32, scheme="m0e4", fit="hqq")


def test_model_format_carries_the_fit(tmp_path):
    assert formats.parse("w3").fit == "lsq"                          # today's behaviour
    fmt = formats.parse("w3", 64, fit="hqq")
    assert fmt.fit == "hqq" and formats.head_format(fmt).fit == "hqq"
    assert fmt.label == "w3 (g64, hqq), head w8 (g64, hqq)"
    assert formats.parse("w3", fit="hqq", head="asym8").head.fit is None  # the head's own method
    assert formats.parse("asym4").fit is None
    with pytest.raises(ValueError, match="fit does not apply to scheme 'asym'"):
        formats.parse("asym4", fit="hqq")
    with pytest.raises(ValueError, match="fit does not apply"):
        formats.parse("f32", fit="hqq")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    paths = {store.prepared_path(gguf, formats.parse("w3", fit=f)) for f in ("lsq", "hqq", "minmax")}
    assert len(paths) == 3                                          # the cache key holds the fit


def test_fit_argument():
    p = argparse.ArgumentParser()
    add_model_arguments(p)
    assert p.parse_args(["--format", "w3", "--fit", "hqq"]).fit == "hqq"
    assert p.parse_args([]).fit is None
    with pytest.raises(SystemExit):
        p.parse_args(["--fit", "awq"])
