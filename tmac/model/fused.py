"""One Numba call for all transformer layers of a forward step (AVX-512 LUT path).

Python overhead per token must not dominate a 135M model's ~10 ms token, so the whole layer
stack — RMSNorm, tables, LUT GEMV/GEMM, RoPE, KV write, attention, SwiGLU, residuals — runs
inside ``layers_avx512``, one compiled call per forward step, writing only into buffers planned
by ``tmac.model.shapes`` (no allocation in the decode loop).

This module is the one place the model runtime reaches below ``tmac.kernels.lut_matmul``: it
calls the kernel functions it wraps (table scales, int8 table build, block sums, the AVX-512
int8 lookup kernel) with preallocated outputs. ``tests/test_model.py`` checks every fused linear
against ``tmac.matmul`` element for element, so a change of those internals is caught. It is
imported only when ``tmac.dispatch`` picks the avx512 path; other CPUs run the per-layer path of
``tmac.model.runtime`` (the same ops, with ``tmac.kernels.lut_matmul`` per linear layer).
"""
from __future__ import annotations

import numpy as np

from tmac.kernels.jit import njit, prange
from tmac.kernels.lut_avx512 import lut_int8_avx512
from tmac.kernels.tables import block_sums, build_tables_int8, table_scales
from tmac.model import ops


@njit(cache=True, parallel=True)
def _tables_rows(xin, act, tables, tscale, xsum, starts, stops):
    """Prefill: the tables of each token built on its own thread (rows are independent)."""
    for r in prange(xin.shape[0]):
        table_scales(xin[r:r + 1], act, tscale[r:r + 1])
        build_tables_int8(xin[r:r + 1], act, tscale[r:r + 1], tables[r:r + 1])
        block_sums(xin[r:r + 1], starts, stops, xsum[r:r + 1])


@njit(cache=True, inline="always")
def _table_plan(w):
    """(act_group_size, starts, stops, act_group) of a weight tuple."""
    return w[3], w[8], w[9], w[10]


@njit(cache=True)
def _tables(xin, r0, r1, w, buf):
    """Rows r0..r1-1 of a linear's int8 tables, table scales, block sums and halves (each row
    on its own: the same bits whatever rows a call covers). w = _table_plan(weight): only what
    the tables need, so the callers do not specialize on the weight's offset type."""
    act, starts, stops, act_of_block = w
    tables, tscale, xsum, half = buf
    table_scales(xin[r0:r1], act, tscale[r0:r1])
    build_tables_int8(xin[r0:r1], act, tscale[r0:r1], tables[r0:r1])
    block_sums(xin[r0:r1], starts, stops, xsum[r0:r1])
    for n in range(r0, r1):
        for b in range(half.shape[1]):
            half[n, b] = tscale[n, act_of_block[b]] * np.float32(0.5)


@njit(cache=True)
def _lookup(w, buf, out, tiles_per_task):
    """The LUT kernel on tables already built (parallel over row tiles)."""
    data, sc, off, act, u0, u1, s0, wg, starts, stops, act_of_block = w
    tables, tscale, xsum, half = buf
    lut_int8_avx512(data, tables, u0, u1, s0, half, xsum, wg, sc, off, out, tiles_per_task)


@njit(cache=True)
def lut_linear(xin, w, buf, out, tiles_per_task, threads=1):
    """out (T, Mp) = xin (T, Kpp) @ W.T by int8 table lookup, bit-identical to tmac.matmul.

    w   = (data, scales_t, offsets_t or zeros_u8, act_group_size, u0, u1, s0, weight_group,
           starts, stops, act_group): one layer's packed weight and its block plan (aligned
           plans only)
    buf = (tables (T, Kpp/4, 16) int8, tscale (T, n_act), xsum (T, nblk), half (T, nblk))
    """
    data, sc, off, act, u0, u1, s0, wg, starts, stops, act_of_block = w
    tables, tscale, xsum, half = buf
    if threads > 1 and xin.shape[0] > 1:
        _tables_rows(xin, act, tables, tscale, xsum, starts, stops)
        for n in range(xin.shape[0]):
            for b in range(half.shape[1]):
                half[n, b] = tscale[n, act_of_block[b]] * np.float32(0.5)
    else:
        _tables(xin, 0, xin.shape[0], _table_plan(w), buf)
    _lookup(w, buf, out, tiles_per_task)


@njit(cache=True)
def _layer_weight(w, layer):
    data, sc, off, act, u0, u1, s0, wg, starts, stops, actb = w
    return (data[layer], sc[layer], off[layer], act, u0, u1, s0, wg, starts, stops, actb)


@njit(cache=True, inline="always")
def _chunk(c, n):
    """Rows [r0, r1) of chunk c of ops.ROW_CHUNKS equal chunks of n rows."""
    return c * n // ops.ROW_CHUNKS, (c + 1) * n // ops.ROW_CHUNKS


@njit(cache=True, parallel=True)
def _pre_norm_tables(x, residual, add, dim, norm_w, eps, h, w, buf):
    """Prefill, rows in parallel: x += residual (if add), h = rms_norm(x), tables of h."""
    t = x.shape[0]
    for c in prange(ops.ROW_CHUNKS):
        r0, r1 = _chunk(c, t)
        if add:
            for r in range(r0, r1):
                for d in range(dim):
                    x[r, d] += residual[r, d]
        ops.rms_norm(x, r0, r1 - r0, dim, norm_w, eps, h[r0:r1])
        _tables(h, r0, r1, w, buf)


@njit(cache=True, parallel=True)
def _pre_rope_kv(qkv, dim, n_heads, n_kv, hd, rope_dim, cos, sin, layer_kv, pos):
    """Prefill, rows in parallel: RoPE of queries and keys, keys/values into the cache."""
    t = qkv.shape[0]
    for c in prange(ops.ROW_CHUNKS):
        r0, r1 = _chunk(c, t)
        q = qkv[r0:r1]
        ops.rope(q, r1 - r0, 0, n_heads, hd, rope_dim, cos, sin, pos + r0)
        ops.rope(q, r1 - r0, dim, n_kv, hd, rope_dim, cos, sin, pos + r0)
        ops.store_kv(q, r1 - r0, dim, n_kv, hd, layer_kv, pos + r0)


@njit(cache=True, parallel=True)
def _pre_attention_tables(qkv, n_heads, n_kv, hd, layer_kv, pos, scores, attn, w, buf):
    """Prefill, rows in parallel (chunks of equal causal work): attention, then the tables of
    its output rows."""
    t = attn.shape[0]
    for c in prange(ops.ROW_CHUNKS):
        r0, r1 = ops.causal_chunk(c, ops.ROW_CHUNKS, t, pos)
        ops.attention_rows(qkv, r0, r1, n_heads, n_kv, hd, layer_kv, pos, scores, attn, 0, n_heads)
        _tables(attn, r0, r1, w, buf)


@njit(cache=True, parallel=True)
def _pre_swiglu_tables(gu, ffn, act, w, buf):
    """Prefill, rows in parallel: SwiGLU, then the tables of its rows."""
    t = act.shape[0]
    for c in prange(ops.ROW_CHUNKS):
        r0, r1 = _chunk(c, t)
        ops.swiglu(gu[r0:r1], r1 - r0, ffn, act[r0:r1])
        _tables(act, r0, r1, w, buf)


@njit(cache=True, parallel=True)
def _decode_attention(qkv, n_heads, n_kv, hd, layer_kv, pos, scores, attn):
    """Decode, heads in parallel: the one query row's heads split over the threads (each
    head alone, so the same bits as ops.attention). At 100 tokens of context a layer's
    attention reads ~150 KB of cache from L3, ~25 µs on one thread."""
    for h in prange(n_heads):
        ops.attention_rows(qkv, 0, 1, n_heads, n_kv, hd, layer_kv, pos, scores, attn, h, h + 1)


@njit(cache=True, parallel=True)
def _pre_add(x, y, dim):
    t = x.shape[0]
    for c in prange(ops.ROW_CHUNKS):
        r0, r1 = _chunk(c, t)
        ops.add_into(x[r0:r1], r1 - r0, dim, y[r0:r1])


@njit(cache=True)
def layers_avx512(dims, eps, pos, x, attn_norm, ffn_norm, cos, sin, kv,
                  w_qkv, w_o, w_gu, w_down, h, qkv, scores, attn, o, gu, act, down,
                  b_qkv, b_o, b_gu, b_down, tiles, threads):
    """All layers for T = x.shape[0] tokens at positions pos..pos+T-1; x (T, D) updated in place.

    dims = (n_layers, dim, ffn_dim, n_heads, n_kv_heads, head_dim, rope_dim); w_* are stacked
    over layers (leading axis), kv is the cache storage (layers, 2, Hkv, max_ctx, hd).
    tiles = row tiles per parallel task for (qkv, o, gate_up, down).

    Decode (T = 1): the small steps run on the calling thread between the four LUT kernels of
    a layer (waking a second thread costs more than they take), except attention, whose heads
    go to all threads when there are several (it streams the layer's cache from L3). Prefill (T > 1): every step
    between two kernels is one parallel loop over rows (5 parallel regions per layer besides
    the kernels' 4), whatever ``threads`` is: each row is computed alone, so the bits do not
    depend on the thread count.
    """
    n_layers, dim, ffn, n_heads, n_kv, hd, rope_dim = dims
    t = x.shape[0]
    if t > 1:
        for layer in range(n_layers):
            wq = _layer_weight(w_qkv, layer)
            wo = _layer_weight(w_o, layer)
            wgu = _layer_weight(w_gu, layer)
            wd = _layer_weight(w_down, layer)
            _pre_norm_tables(x, down, layer > 0, dim, attn_norm[layer], eps, h, _table_plan(wq), b_qkv)
            _lookup(wq, b_qkv, qkv, tiles[0])
            _pre_rope_kv(qkv, dim, n_heads, n_kv, hd, rope_dim, cos, sin, kv[layer], pos)
            _pre_attention_tables(qkv, n_heads, n_kv, hd, kv[layer], pos, scores, attn,
                                  _table_plan(wo), b_o)
            _lookup(wo, b_o, o, tiles[1])
            _pre_norm_tables(x, o, True, dim, ffn_norm[layer], eps, h, _table_plan(wgu), b_gu)
            _lookup(wgu, b_gu, gu, tiles[2])
            _pre_swiglu_tables(gu, ffn, act, _table_plan(wd), b_down)
            _lookup(wd, b_down, down, tiles[3])
        _pre_add(x, down, dim)
        return
    for layer in range(n_layers):
        ops.rms_norm(x, 0, t, dim, attn_norm[layer], eps, h)
        lut_linear(h, _layer_weight(w_qkv, layer), b_qkv, qkv, tiles[0], 1)
        ops.rope(qkv, t, 0, n_heads, hd, rope_dim, cos, sin, pos)
        ops.rope(qkv, t, dim, n_kv, hd, rope_dim, cos, sin, pos)
        ops.store_kv(qkv, t, dim, n_kv, hd, kv[layer], pos)
        if threads > 1:
            _decode_attention(qkv, n_heads, n_kv, hd, kv[layer], pos, scores, attn)
        else:
            ops.attention(qkv, t, n_heads, n_kv, hd, kv[layer], pos, scores, attn)
        lut_linear(attn, _layer_weight(w_o, layer), b_o, o, tiles[1], 1)
        ops.add_into(x, t, dim, o)
        ops.rms_norm(x, 0, t, dim, ffn_norm[layer], eps, h)
        lut_linear(h, _layer_weight(w_gu, layer), b_gu, gu, tiles[2], 1)
        ops.swiglu(gu, t, ffn, act)
        lut_linear(act, _layer_weight(w_down, layer), b_down, down, tiles[3], 1)
        ops.add_into(x, t, dim, down)

