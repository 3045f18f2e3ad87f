"""The model runtime's elementwise math against float64 numpy: expf, SiLU, softmax attention.

These ops need no model file (tmac.model.ops imports only numpy and numba).
"""
import math

import numpy as np
import pytest
from numba import njit

from tmac.model import ops
from tmac.model.expf import expf


@njit(error_model="numpy")   # not cached: it inlines expf, whose edits a cache would miss
def _expf_all(x, out):
    for i in range(x.shape[0]):
        out[i] = expf(x[i])


def _ulp_distance(a, b):
    """|a - b| in float32 units in the last place (both finite, same sign)."""
    return np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64))


def test_expf_is_within_4_ulp_on_its_range():
    x = np.concatenate([np.linspace(-87.0, 88.0, 1_000_003, dtype=np.float32),
                        np.float32([0.0, -0.0, 1e-30, -1e-30, math.log(2), -math.log(2)])])
    got = np.empty_like(x)
    _expf_all(x, got)
    exact = np.exp(x.astype(np.float64)).astype(np.float32)
    ulps = _ulp_distance(got, exact)
    assert ulps.max() <= 4 and ulps.mean() < 2.0


def test_expf_clamps_outside_its_range_and_keeps_nan():
    x = np.float32([-np.inf, -1000.0, -87.5, 88.5, 1000.0, np.inf, np.nan])
    got = np.empty_like(x)
    _expf_all(x, got)
    low, high = np.exp(np.float64(-87.0)), np.exp(np.float64(88.0))
    assert np.allclose(got[:3], low, rtol=1e-6) and np.allclose(got[3:6], high, rtol=1e-6)
    assert np.isnan(got[6]) and np.all(np.isfinite(got[:6]))


def test_swiglu_matches_float64():
    rng = np.random.default_rng(0)
    ffn = 40
    gate_up = (rng.standard_normal((3, 2 * ffn + 8)) * 6).astype(np.float32)   # padded rows
    out = np.full((3, ffn), np.nan, np.float32)
    ops.swiglu(gate_up, 3, ffn, out)
    g, u = gate_up[:, :ffn].astype(np.float64), gate_up[:, ffn:2 * ffn].astype(np.float64)
    np.testing.assert_allclose(out, g / (1 + np.exp(-g)) * u, rtol=2e-6, atol=1e-30)


@pytest.mark.parametrize("n_rows,pos", [(1, 0), (1, 37), (5, 11)])
def test_attention_matches_float64_softmax(n_rows, pos):
    """Causal GQA (6 query heads on 2 KV heads): row t sees cache positions 0..pos+t."""
    rng = np.random.default_rng(n_rows + pos)
    n_heads, n_kv, hd, max_ctx = 6, 2, 16, 64
    dim = n_heads * hd
    qkv = rng.standard_normal((n_rows, dim + 2 * n_kv * hd)).astype(np.float32)
    layer_kv = rng.standard_normal((2, n_kv, max_ctx, hd)).astype(np.float32)
    scores = np.zeros((n_heads, n_rows, max_ctx), np.float32)
    out = np.full((n_rows, dim), np.nan, np.float32)
    ops.attention(qkv, n_rows, n_heads, n_kv, hd, layer_kv, pos, scores, out)
    for t in range(n_rows):
        for h in range(n_heads):
            q = qkv[t, h * hd:(h + 1) * hd].astype(np.float64)
            keys = layer_kv[0, h // 3, :pos + t + 1].astype(np.float64)
            values = layer_kv[1, h // 3, :pos + t + 1].astype(np.float64)
            s = keys @ q / math.sqrt(hd)
            p = np.exp(s - s.max())
            expected = (p / p.sum()) @ values
            np.testing.assert_allclose(out[t, h * hd:(h + 1) * hd], expected, rtol=1e-5, atol=1e-5)


@njit
def _dot_and_total(a, b, n):
    return ops.dot(a, b, n), ops.total(a, n)


def _lane_order_sum(terms):
    """float32 sum of ``terms`` in ops.dot's order, step by step in numpy: 8 running sums (term
    i to lane i mod 8), the tree ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)), then the tail in order."""
    terms = np.asarray(terms, np.float32)
    body = len(terms) - len(terms) % 8
    lanes = np.zeros(8, np.float32)
    for i in range(0, body, 8):
        lanes = lanes + terms[i:i + 8]
    s = lanes
    result = np.float32((s[0] + s[1]) + (s[2] + s[3])) + np.float32((s[4] + s[5]) + (s[6] + s[7]))
    for t in terms[body:]:
        result = np.float32(result + t)
    return result


@pytest.mark.parametrize("n", [0, 5, 8, 64, 67, 576])
def test_sums_have_the_order_the_source_states(n):
    """ops.dot and ops.total (rms_norm, attention logits and softmax) add in the order written
    in their docstrings, bit for bit: no compiler flag may reorder them, so an op gives the
    same bits alone or inlined into the fused model step."""
    rng = np.random.default_rng(n)
    a = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    got_dot, got_total = (np.float32(v) for v in _dot_and_total(a, b, n))
    assert got_dot.view(np.uint32) == _lane_order_sum(a * b).view(np.uint32)
    assert got_total.view(np.uint32) == _lane_order_sum(a).view(np.uint32)
