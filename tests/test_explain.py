"""tmac.explain: its steps are the reference's numbers, and they add up to matmul's output."""

import numpy as np
import pytest
from rich.console import Console

import tmac


@pytest.mark.parametrize("lut", ["int8", "float32"])
def test_explanation_adds_up_to_the_reference_output(lut):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 40)).astype(np.float32)
    x = rng.standard_normal(40).astype(np.float32)
    qw = tmac.quantize(w, bits=3, group_size=20)
    e = tmac.explain(qw, x, row=3, lut=lut, act_group_size=20)
    y = tmac.matmul(qw, x, backend="reference", lut=lut, act_group_size=20)
    assert np.float32(e.value) == y[3]
    # indices are the planes' bits, bit t from column 4g + t
    for i in range(3):
        expected = sum(((e.codes[:, t] >> i) & 1) << t for t in range(4))
        np.testing.assert_array_equal(e.indices[i], expected)
        np.testing.assert_array_equal(e.looked_up[i], e.tables[np.arange(10), e.indices[i]])
    # running the epilogue by hand over the shown block values gives the value
    total = np.float32(0)
    for v in e.block_value:
        total = total + v
    assert total == np.float32(e.value)
    assert e.dense == pytest.approx(float(qw.dequantize()[3].astype(np.float64) @ x), rel=1e-12)
    # each looked-up entry is off by at most half a table step; planes weigh 1/2, 1, 2
    groups_per_block = 20 // 4
    half_steps = np.abs(e.block_scale) * groups_per_block * 3.5 * e.table_scales / 2
    bound = half_steps.sum() if lut == "int8" else 1e-5 * abs(e.dense)
    assert abs(e.value - e.dense) <= bound + 1e-6


def test_float_table_entries_are_signed_sums():
    x = np.arange(1, 9, dtype=np.float32)
    qw = tmac.quantize(np.ones((2, 8), np.float32), bits=2, group_size=8)
    e = tmac.explain(qw, x, lut="float32")
    assert e.tables[1, 0b0110] == -5 + 6 + 7 - 8


def test_renders_in_terminal_and_html():
    rng = np.random.default_rng(1)
    qw = tmac.quantize(rng.standard_normal((2, 16)).astype(np.float32), bits=2, group_size=16)
    e = tmac.explain(qw, rng.standard_normal(16).astype(np.float32), row=1)
    console = Console(record=True, width=160)
    console.print(e)
    text = console.export_text()
    assert "plane 1" in text and e.summary().split()[0] in text
    assert "<html" in e._repr_html_().lower()


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(row=2), ValueError, "row"), (dict(row=1.0), TypeError, "row"),
    (dict(lut="int4"), ValueError, "lut"), (dict(x=np.ones(5, np.float32)), ValueError, "K=8"),
])
def test_explain_rejects_bad_input(kwargs, error, name):
    qw = tmac.quantize(np.ones((2, 8), np.float32), bits=2, group_size=8)
    args = dict(x=np.ones(8, np.float32))
    args.update(kwargs)
    with pytest.raises(error, match=name):
        tmac.explain(qw, **args)


def test_explanation_shows_once_everywhere_and_leaks_nothing():
    """One rendering per place: the rich text in a terminal's repr (no dataclass dump), one
    MIME bundle (HTML with its text fallback) in Jupyter; no file left open."""
    import gc
    import warnings

    rng = np.random.default_rng(4)
    qw = tmac.quantize(rng.standard_normal((8, 32)).astype(np.float32), bits=3, group_size=16)
    x = rng.standard_normal(32).astype(np.float32)
    for e in (tmac.explain(qw, x, 2),
              tmac.explain(tmac.quantize(rng.standard_normal((8, 32)).astype(np.float32),
                                         group_size=16, scheme="e2m1"), x, 2)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            text = repr(e)
            bundle = e._repr_mimebundle_()
            gc.collect()
        assert "y[2] =" in text and "Explanation(" not in text and "array(" not in text
        assert set(bundle) == {"text/html", "text/plain"} and "<html" in bundle["text/html"].lower()
