"""One Numba call for all transformer layers of a forward step, on any ISA path's LUT kernel.

Python overhead per token must not dominate a 135M model's ~10 ms token, so the whole layer
stack — RMSNorm, tables, LUT GEMV/GEMM, biases, RoPE, KV write, attention, SwiGLU, residuals — runs
inside ``layers``, one compiled call per forward step, writing only into buffers planned
by ``tmac.model.shapes`` (no allocation in the decode loop).

Its arguments are structured: a ``FusedModel`` built once per runtime (dimensions, norms, RoPE
tables, the four linears' packed weights stacked over layers, tiling, the kernel path's tag) and
a ``Step`` of the buffers one forward step writes. They cross into Numba as plain tuples
(``plain``; a named tuple argument costs ~1.5 µs of typing per call and keeps type-cache entries
alive) and are named again inside (``_named_model``, ``_named_step``); both are cacheable like
any tuple.

The LUT kernel is the chosen ISA path's ``lut_int8`` (avx512, avx2 or portable: one packed
layout and one signature), selected by the tag's type (tmac.kernels.by_isa), so each path is
its own cached specialization. This module is the one place the model runtime reaches below
``tmac.kernels.lut_matmul``: it calls the kernel functions it wraps (table scales, int8 table
build, block sums, the lookup kernel) with preallocated outputs. ``tests/test_model.py`` checks
every fused linear against ``tmac.matmul`` element for element on every path this CPU runs, so
a change of those internals is caught.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba.core import types

from tmac.kernels.by_isa import lut_int8_on
from tmac.kernels.lut import read_only
from tmac.kernels.jit import njit, overload, prange
from tmac.kernels.tables import block_sums, build_tables_int8, table_scales
from tmac.model import ops


class Linear(NamedTuple):
    """One linear layer's packed weight (or all layers', stacked on a leading axis) and plan.

    data (Mt, U, bits, 2, 64) uint8, sc (Mt, G, 64) float32, off: the offsets (float32) or the
    uint8 zeros, act: the activation group, blocks: tmac.kernels.lut.Plan.blocks."""

    data: np.ndarray
    sc: np.ndarray
    off: np.ndarray
    act: np.int64
    blocks: np.ndarray


class Stack(NamedTuple):
    """One linear kind (qkv, o, gate_up or down) over all layers, each layer's weight and plan
    in flat buffers, so that layers may differ in width and group size (``_layer`` makes a
    layer's Linear of views, no copy). The parameter forms and dtypes are the same in every
    layer.

    data uint8, blocks int64: 1-D concatenations. sc: the group scales, 1-D likewise, or for the
    K-quants' two-level scales a pair (super-block d, group sc) of 1-D concatenations. off: the
    offsets or zeros in the same forms, or for a fixed zero (Q4_0, Q8_0, Q3_K, ...) one per
    layer, (layers, 1) float32. meta (layers, 11) int64 rows: data start, row tiles, units,
    bits, parameter start, weight groups, blocks start, blocks, activation group, super-block
    parameter start, super-blocks per row (0 for one-level forms)."""

    data: np.ndarray
    sc: object
    off: object
    blocks: np.ndarray
    meta: np.ndarray


class Tables(NamedTuple):
    """A linear's int8 table buffers for T rows: tables (T, Kpp/4, 16) int8, table scales
    (T, n_act), block sums and halves (T, nblocks), float32."""

    tables: np.ndarray
    tscale: np.ndarray
    xsum: np.ndarray
    half: np.ndarray


class FusedModel(NamedTuple):
    """What stays fixed over a runtime's life.

    dims = (n_layers, dim, ffn_dim, n_heads, n_kv_heads, head_dim, rope_dim, rope_neox);
    norms (layers, dim); qkv_bias (layers, dim + 2 kv_dim), or (layers, 0) without biases;
    cos/sin (max_ctx, rope_dim / 2); qkv/o/gate_up/down: a Stack each; tiles: row tiles per
    parallel task for (qkv, o, gate_up, down); isa: the kernel path's tag
    (tmac.kernels.by_isa.tag)."""

    dims: tuple
    eps: np.float32
    attn_norm: np.ndarray
    ffn_norm: np.ndarray
    qkv_bias: np.ndarray
    cos: np.ndarray
    sin: np.ndarray
    qkv: Stack
    o: Stack
    gate_up: Stack
    down: Stack
    tiles: tuple
    isa: np.ndarray


class Step(NamedTuple):
    """The buffers of one forward step (views of the planned arena) and the KV cache storage
    (layers, 2, Hkv, max_ctx, hd); tables_* are the four linears' table buffers."""

    x: np.ndarray
    h: np.ndarray
    qkv: np.ndarray
    scores: np.ndarray
    attn: np.ndarray
    o: np.ndarray
    gate_up: np.ndarray
    act: np.ndarray
    down: np.ndarray
    kv: np.ndarray
    tables_qkv: Tables
    tables_o: Tables
    tables_gate_up: Tables
    tables_down: Tables


def plain(value):
    """A (nested) named tuple as plain tuples, the form the entry points take."""
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


@njit(cache=True, inline="always")
def _named_model(t):
    return FusedModel(t[0], t[1], t[2], t[3], t[4], t[5], t[6], Stack(*t[7]), Stack(*t[8]),
                      Stack(*t[9]), Stack(*t[10]), t[11], t[12])


@njit(cache=True, inline="always")
def _named_step(t):
    return Step(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], Tables(*t[10]),
                Tables(*t[11]), Tables(*t[12]), Tables(*t[13]))


@njit(cache=True, parallel=True)
def _tables_rows(xin, act, tables, tscale, xsum, starts, stops):
    """Prefill: the tables of each token built on its own thread (rows are independent)."""
    for r in prange(xin.shape[0]):
        table_scales(xin[r:r + 1], act, tscale[r:r + 1])
        build_tables_int8(xin[r:r + 1], act, tscale[r:r + 1], tables[r:r + 1])
        block_sums(xin[r:r + 1], starts, stops, xsum[r:r + 1])


@njit(cache=True, inline="always")
def _table_plan(w):
    """(act_group_size, blocks) of a Linear: only what the tables need, so the callers do not
    specialize on the weight's offset type."""
    return w.act, w.blocks


@njit(cache=True)
def _tables(xin, r0, r1, plan, buf):
    """Rows r0..r1-1 of a linear's int8 tables, table scales, block sums and halves (each row
    on its own: the same bits whatever rows a call covers). plan = _table_plan(weight)."""
    act, blocks = plan
    table_scales(xin[r0:r1], act, buf.tscale[r0:r1])
    build_tables_int8(xin[r0:r1], act, buf.tscale[r0:r1], buf.tables[r0:r1])
    block_sums(xin[r0:r1], blocks[4], blocks[5], buf.xsum[r0:r1])
    for n in range(r0, r1):
        for b in range(blocks.shape[1]):              # the buffers fit the layer with most blocks
            buf.half[n, b] = buf.tscale[n, blocks[6, b]] * np.float32(0.5)


@njit(cache=True)
def _lookup(w, buf, out, tiles_per_task, isa):
    """The LUT kernel of path ``isa`` (a tag) on tables already built (parallel over row tiles)."""
    lut_int8_on(isa, w.data, buf.tables, w.blocks, buf.half, buf.xsum, w.sc, w.off, out,
                tiles_per_task)


@njit(cache=True)
def linear(xin, w, buf, out, tiles_per_task, threads, isa):
    """Entry point of lut_linear: w, buf as plain tuples (``plain(Linear)``, ``plain(Tables)``)."""
    lut_linear(xin, Linear(*w), Tables(*buf), out, tiles_per_task, threads, isa)


@njit(cache=True)
def lut_linear(xin, w, buf, out, tiles_per_task, threads, isa):
    """out (T, Mp) = xin (T, Kpp) @ W.T by int8 table lookup on path ``isa`` (a tag of
    tmac.kernels.by_isa), bit-identical to tmac.matmul.

    w: one layer's Linear (aligned plans only); buf: its Tables for T rows."""
    if threads > 1 and xin.shape[0] > 1:
        _tables_rows(xin, w.act, buf.tables, buf.tscale, buf.xsum, w.blocks[4], w.blocks[5])
        for n in range(xin.shape[0]):
            for b in range(w.blocks.shape[1]):
                buf.half[n, b] = buf.tscale[n, w.blocks[6, b]] * np.float32(0.5)
    else:
        _tables(xin, 0, xin.shape[0], _table_plan(w), buf)
    _lookup(w, buf, out, tiles_per_task, isa)


def _layer_params(p, at, n, shape, s_at, s_n, s_shape):
    """A layer's scales (or offsets) from a Stack buffer: a view of the flat per-group
    buffer, or for two-level forms the pair (super-block view, group view)."""


@overload(_layer_params, inline="always")
def _layer_params_impl(p, at, n, shape, s_at, s_n, s_shape):
    if isinstance(p, types.BaseTuple):
        return lambda p, at, n, shape, s_at, s_n, s_shape: (
            p[0][s_at:s_at + s_n].reshape(s_shape), p[1][at:at + n].reshape(shape))
    return lambda p, at, n, shape, s_at, s_n, s_shape: p[at:at + n].reshape(shape)


def _layer_off(off, layer, at, n, shape, s_at, s_n, s_shape):
    """A layer's offsets or zeros: as _layer_params, or its fixed zero."""


@overload(_layer_off, inline="always")
def _layer_off_impl(off, layer, at, n, shape, s_at, s_n, s_shape):
    if isinstance(off, types.Array) and off.ndim == 2:  # (layers, 1): a fixed zero per layer
        return lambda off, layer, at, n, shape, s_at, s_n, s_shape: off[layer, 0]
    return lambda off, layer, at, n, shape, s_at, s_n, s_shape: _layer_params(
        off, at, n, shape, s_at, s_n, s_shape)


@njit(cache=True)
def _layer(st, layer):
    """Layer ``layer``'s Linear: views of the Stack's flat buffers (no copy)."""
    d_at, tiles, units, bits, p_at, groups, b_at, n_blocks, act, s_at, supers = st.meta[layer]
    n_data, n_params, n_supers = tiles * units * bits * 128, tiles * groups * 64, tiles * supers * 64
    shape, s_shape = (tiles, groups, 64), (tiles, supers, 64)
    return Linear(st.data[d_at:d_at + n_data].reshape((tiles, units, bits, 2, 64)),
                  _layer_params(st.sc, p_at, n_params, shape, s_at, n_supers, s_shape),
                  _layer_off(st.off, layer, p_at, n_params, shape, s_at, n_supers, s_shape), act,
                  st.blocks[b_at:b_at + 7 * n_blocks].reshape((7, n_blocks)))


def _parts(params):
    """(group array, super-block array or None) of a parameter in either form."""
    return (params[1], params[0]) if isinstance(params, tuple) else (params, None)


def param_form(params):
    """What must agree over the layers of one Stack: the form and the dtypes."""
    if isinstance(params, tuple):
        return ("two-level", params[0].dtype, params[1].dtype)
    return ("fixed" if np.ndim(params) == 0 else "per-group", np.asarray(params).dtype)


def _concat(per_layer):
    """The flat Stack buffer(s) of one parameter over the layers (same form in each)."""
    first = per_layer[0]
    if isinstance(first, tuple):
        return tuple(np.concatenate([p[i].ravel() for p in per_layer]) for i in range(2))
    if np.ndim(first) == 0:
        return np.array([[p] for p in per_layer], np.float32)
    return np.concatenate([p.ravel() for p in per_layer])


def stack(weights, plans):
    """A Stack of per-layer packed weights (tmac.layout.PackedCodes) and their block plans
    (tmac.kernels.lut.Plan); ValueError if their parameter forms or dtypes differ."""
    if len({(param_form(w.scales_t), param_form(w.zeros_t)) for w in weights}) > 1:
        raise ValueError("the layers' group parameters differ in storage (form or dtype): "
                         "they cannot share one fused stack")
    meta, at = [], np.zeros(4, np.int64)
    for w, p in zip(weights, plans):
        tiles, units, bits = w.data.shape[:3]
        groups, supers = _parts(w.scales_t)
        meta.append((at[0], tiles, units, bits, at[1], groups.shape[1], at[2], p.blocks.shape[1],
                     p.act_group_size, at[3], 0 if supers is None else supers.shape[1]))
        at += (w.data.size, groups.size, p.blocks.size, 0 if supers is None else supers.size)
    return Stack(np.concatenate([w.data.ravel() for w in weights]),
                 _concat([w.scales_t for w in weights]), _concat([w.zeros_t for w in weights]),
                 read_only(np.concatenate([p.blocks.ravel() for p in plans])),
                 np.array(meta, np.int64))


@njit(cache=True, inline="always")
def _chunk(c, n):
    """Rows [r0, r1) of chunk c of ops.ROW_CHUNKS equal chunks of n rows."""
    return c * n // ops.ROW_CHUNKS, (c + 1) * n // ops.ROW_CHUNKS


@njit(cache=True, parallel=True)
def _pre_norm_tables(x, residual, add, dim, norm_w, eps, h, plan, buf):
    """Prefill, rows in parallel: x += residual (if add), h = rms_norm(x), tables of h."""
    t = x.shape[0]
    for c in prange(ops.ROW_CHUNKS):
        r0, r1 = _chunk(c, t)
        if add:
            for r in range(r0, r1):
                for d in range(dim):
                    x[r, d] += residual[r, d]
        ops.rms_norm(x, r0, r1 - r0, dim, norm_w, eps, h[r0:r1])
        _tables(h, r0, r1, plan, buf)


@njit(cache=True, inline="always")
def _bias_rope_kv(qkv, n_rows, dim, n_heads, n_kv, hd, rope_dim, neox, bias, cos, sin, layer_kv,
                  pos):
    """Q/K/V biases, RoPE of queries and keys, keys/values into the cache (rows 0..n_rows-1
    of qkv at positions pos..)."""
    ops.add_bias(qkv, n_rows, bias)
    ops.rope(qkv, n_rows, 0, n_heads, hd, rope_dim, cos, sin, pos, neox)
    ops.rope(qkv, n_rows, dim, n_kv, hd, rope_dim, cos, sin, pos, neox)
    ops.store_kv(qkv, n_rows, dim, n_kv, hd, layer_kv, pos)


@njit(cache=True, parallel=True)
def _pre_rope_kv(qkv, dim, n_heads, n_kv, hd, rope_dim, neox, bias, cos, sin, layer_kv, pos):
    """Prefill, rows in parallel: _bias_rope_kv."""
    t = qkv.shape[0]
    for c in prange(ops.ROW_CHUNKS):
        r0, r1 = _chunk(c, t)
        _bias_rope_kv(qkv[r0:r1], r1 - r0, dim, n_heads, n_kv, hd, rope_dim, neox, bias, cos,
                      sin, layer_kv, pos + r0)


@njit(cache=True, parallel=True)
def _pre_attention_tables(qkv, n_heads, n_kv, hd, layer_kv, pos, scores, attn, plan, buf):
    """Prefill, rows in parallel (chunks of equal causal work): attention, then the tables of
    its output rows."""
    t = attn.shape[0]
    for c in prange(ops.ROW_CHUNKS):
        r0, r1 = ops.causal_chunk(c, ops.ROW_CHUNKS, t, pos)
        ops.attention_rows(qkv, r0, r1, n_heads, n_kv, hd, layer_kv, pos, scores, attn, 0, n_heads)
        _tables(attn, r0, r1, plan, buf)


@njit(cache=True, parallel=True)
def _pre_swiglu_tables(gu, ffn, act, plan, buf):
    """Prefill, rows in parallel: SwiGLU, then the tables of its rows."""
    t = act.shape[0]
    for c in prange(ops.ROW_CHUNKS):
        r0, r1 = _chunk(c, t)
        ops.swiglu(gu[r0:r1], r1 - r0, ffn, act[r0:r1])
        _tables(act, r0, r1, plan, buf)


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
def _prefill(m, s, pos):
    """Every step between two kernels is one parallel loop over rows (5 parallel regions per
    layer besides the kernels' 4); each row is computed alone, so the bits do not depend on
    the thread count."""
    n_layers, dim, ffn, n_heads, n_kv, hd, rope_dim, neox = m.dims
    for layer in range(n_layers):
        wq, wo = _layer(m.qkv, layer), _layer(m.o, layer)
        wgu, wd = _layer(m.gate_up, layer), _layer(m.down, layer)
        _pre_norm_tables(s.x, s.down, layer > 0, dim, m.attn_norm[layer], m.eps, s.h,
                         _table_plan(wq), s.tables_qkv)
        _lookup(wq, s.tables_qkv, s.qkv, m.tiles[0], m.isa)
        _pre_rope_kv(s.qkv, dim, n_heads, n_kv, hd, rope_dim, neox, m.qkv_bias[layer], m.cos,
                     m.sin, s.kv[layer], pos)
        _pre_attention_tables(s.qkv, n_heads, n_kv, hd, s.kv[layer], pos, s.scores, s.attn,
                              _table_plan(wo), s.tables_o)
        _lookup(wo, s.tables_o, s.o, m.tiles[1], m.isa)
        _pre_norm_tables(s.x, s.o, True, dim, m.ffn_norm[layer], m.eps, s.h, _table_plan(wgu),
                         s.tables_gate_up)
        _lookup(wgu, s.tables_gate_up, s.gate_up, m.tiles[2], m.isa)
        _pre_swiglu_tables(s.gate_up, ffn, s.act, _table_plan(wd), s.tables_down)
        _lookup(wd, s.tables_down, s.down, m.tiles[3], m.isa)
    _pre_add(s.x, s.down, dim)


@njit(cache=True)
def _decode(m, s, pos, threads):
    """The small steps run on the calling thread between the four LUT kernels of a layer
    (waking a second thread costs more than they take), except attention, whose heads go to
    all threads when there are several (it streams the layer's cache from L3)."""
    n_layers, dim, ffn, n_heads, n_kv, hd, rope_dim, neox = m.dims
    t = s.x.shape[0]
    for layer in range(n_layers):
        kv = s.kv[layer]
        ops.rms_norm(s.x, 0, t, dim, m.attn_norm[layer], m.eps, s.h)
        lut_linear(s.h, _layer(m.qkv, layer), s.tables_qkv, s.qkv, m.tiles[0], 1, m.isa)
        _bias_rope_kv(s.qkv, t, dim, n_heads, n_kv, hd, rope_dim, neox, m.qkv_bias[layer],
                      m.cos, m.sin, kv, pos)
        if threads > 1:
            _decode_attention(s.qkv, n_heads, n_kv, hd, kv, pos, s.scores, s.attn)
        else:
            ops.attention(s.qkv, t, n_heads, n_kv, hd, kv, pos, s.scores, s.attn)
        lut_linear(s.attn, _layer(m.o, layer), s.tables_o, s.o, m.tiles[1], 1, m.isa)
        ops.add_into(s.x, t, dim, s.o)
        ops.rms_norm(s.x, 0, t, dim, m.ffn_norm[layer], m.eps, s.h)
        lut_linear(s.h, _layer(m.gate_up, layer), s.tables_gate_up, s.gate_up, m.tiles[2], 1, m.isa)
        ops.swiglu(s.gate_up, t, ffn, s.act)
        lut_linear(s.act, _layer(m.down, layer), s.tables_down, s.down, m.tiles[3], 1, m.isa)
        ops.add_into(s.x, t, dim, s.down)


@njit(cache=True)
def layers(model, step, pos, threads):
    """All layers for T tokens at positions pos..pos+T-1; the residual stream step.x (T, D) is
    updated in place. model: plain(FusedModel), step: plain(Step). Decode (T = 1) and prefill
    (T > 1) as _decode/_prefill."""
    m, s = _named_model(model), _named_step(step)
    if s.x.shape[0] > 1:
        _prefill(m, s, pos)
    else:
        _decode(m, s, pos, threads)
