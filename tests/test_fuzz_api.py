"""Hostile and random input to every public name: valid input matches the reference, invalid
input raises TypeError/ValueError naming the argument, and inputs are never modified."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tmac
from tmac.cli import main as cli_main

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BAD_DTYPES = [np.int8, np.int32, np.uint8, np.bool_, np.complex64, object]
GOOD_DTYPES = [np.float16, np.float32, np.float64]


def small_qw(seed=0, m=6, k=24, bits=2, group_size=12):
    w = np.random.default_rng(seed).standard_normal((m, k)).astype(np.float32)
    return tmac.quantize(w, bits=bits, group_size=group_size)


def views(a, kind):
    """The same values as a non-contiguous, negative-stride or read-only array."""
    if kind == "strided":
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    if kind == "reversed":
        return a[..., ::-1].copy()[..., ::-1]
    if kind == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    return a


@FUZZ
@given(m=st.integers(1, 7), k=st.integers(1, 30), bits=st.integers(1, 4),
       scheme=st.sampled_from(["asym", "sym", "ternary"]), dtype=st.sampled_from(GOOD_DTYPES),
       kind=st.sampled_from(["plain", "strided", "reversed", "readonly"]),
       magnitude=st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e30]), seed=st.integers(0, 1000))
def test_quantize_and_matmul_valid_inputs_match_reference(m, k, bits, scheme, dtype, kind,
                                                          magnitude, seed):
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):                 # float16 of 1e30: inf, skipped below
        w = views((rng.standard_normal((m, k)) * magnitude).astype(dtype), kind)
    x = views(rng.standard_normal((2, k)).astype(dtype), kind)
    if not (np.isfinite(w.astype(np.float32)).all() and np.isfinite(x.astype(np.float32)).all()):
        return                                       # float16 overflow: covered by the NaN tests
    w_before, x_before = w.copy(), x.copy()
    qw = tmac.quantize(w, bits=bits, group_size=None, scheme=scheme)
    y = tmac.matmul(qw, x)
    want = tmac.reference.lut_matmul.lut_matmul(qw.codes, qw.scales, qw.zeros, qw.bits,
                                                x.astype(np.float32), -(-k // 4) * 4, "int8")
    np.testing.assert_array_equal(y.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(w, w_before)
    np.testing.assert_array_equal(x, x_before)
    assert np.isfinite(y).all()


@FUZZ
@given(dtype=st.sampled_from(BAD_DTYPES), shape=st.sampled_from([(4, 8), (8,), ()]))
def test_bad_dtypes_are_refused(dtype, shape):
    bad = np.ones(shape, dtype=dtype)
    with pytest.raises(TypeError, match="w"):
        tmac.quantize(bad)
    with pytest.raises(TypeError, match="x"):
        tmac.matmul(small_qw(), bad)
    with pytest.raises(TypeError, match="x"):
        tmac.dequant_matmul(small_qw(), bad)
    with pytest.raises(TypeError, match="x"):
        tmac.explain(small_qw(), bad)


@FUZZ
@given(shape=st.sampled_from([(), (0,), (0, 24), (3, 0), (1, 1, 23), (25,), (2, 23)]))
def test_bad_shapes_are_refused(shape):
    with pytest.raises(ValueError, match="x"):
        tmac.matmul(small_qw(), np.ones(shape, np.float32))
    if len(shape) != 2 or 0 in shape:
        with pytest.raises(ValueError, match="w"):
            tmac.quantize(np.ones(shape, np.float32))


@FUZZ
@given(value=st.sampled_from([np.nan, np.inf, -np.inf]), where=st.integers(0, 23))
def test_non_finite_values_are_refused(value, where):
    x = np.ones(24, np.float32)
    x[where] = value
    with pytest.raises(ValueError, match="finite"):
        tmac.matmul(small_qw(), x)
    with pytest.raises(ValueError, match="finite"):
        tmac.quantize(x.reshape(2, 12))


@FUZZ
@given(value=st.one_of(st.none(), st.text(max_size=3), st.floats(), st.lists(st.integers(), max_size=2),
                       st.integers(-5, 40), st.booleans()))
def test_wrong_types_and_values_for_options(value):
    qw, x = small_qw(), np.ones(24, np.float32)
    for call in (lambda: tmac.quantize(np.ones((2, 24), np.float32), bits=value),
                 lambda: tmac.matmul(qw, x, backend=value),
                 lambda: tmac.matmul(qw, x, lut=value),
                 lambda: tmac.matmul(qw, x, threads=value),
                 lambda: tmac.explain(qw, x, row=value)):
        try:
            result = call()
        except (TypeError, ValueError) as error:
            assert str(error)                        # a message, not a bare exception
        else:
            assert np.isfinite(np.asarray(getattr(result, "value", result))).all()


def test_huge_declared_sizes_fail_before_allocating():
    huge = np.broadcast_to(np.float32(1), (10**6, 10**6))
    with pytest.raises(ValueError, match="too large"):
        tmac.quantize(huge)
    with pytest.raises(ValueError, match="too large"):
        tmac.matmul(small_qw(), np.broadcast_to(np.float32(1), (10**11, 24)))


@pytest.mark.parametrize("field, value, error", [
    ("codes", np.full((6, 24), 4, np.uint8), ValueError),        # code 4 with bits=2
    ("codes", np.zeros((6, 24), np.int32), TypeError),
    ("scales", np.ones((6, 3), np.float32), ValueError),          # K // group_size is 2
    ("scales", np.full((6, 2), np.nan, np.float32), ValueError),
    ("zeros", [[1.0, 1.0]] * 6, TypeError),
    ("bits", 9, ValueError), ("group_size", 7, ValueError),
])
def test_quantized_weight_refuses_parts_that_do_not_fit(field, value, error):
    qw = small_qw()
    parts = dict(codes=qw.codes, scales=qw.scales, zeros=qw.zeros, bits=qw.bits,
                 group_size=qw.group_size, scheme=qw.scheme)
    parts[field] = value
    with pytest.raises(error, match=field):
        tmac.QuantizedWeight(**parts)


@pytest.mark.parametrize("argv", [["demo", "--m", "-3"], ["demo", "--k", "0"],
                                  ["demo", "--group-size", "7"], ["demo", "--backend", "gpu"]])
def test_cli_bad_arguments_exit_2_with_a_message(argv, capsys):
    assert cli_main(argv + ["--repeats", "1", "--m", "8"] if "--m" not in argv else argv) == 2
    assert "error" in capsys.readouterr().err


FUZZED = {"quantize", "matmul", "dequant_matmul", "explain", "QuantizedWeight",
          "save", "load"}         # save/load: their bad arguments and files in tests/test_save.py


def test_every_public_name_is_fuzzed():
    public = {n for n in tmac.__all__ if callable(getattr(tmac, n)) and not n.startswith("_")}
    assert public <= FUZZED, f"public names without fuzz coverage: {sorted(public - FUZZED)}"
