"""LUT GEMV/GEMM with AVX-512 VBMI + VNNI (int8 tables) and AVX-512F vpermps (float32 tables).

Compile only on a CPU with avx512f/bw/vbmi/vnni (tmac.kernels.dispatch decides); functions and
arguments as in every ISA path module (tmac.kernels.portable): the int8 kernel walks whole
16-column units, block b using units u0..u1-1 of the packed codes and the 4 table slots
s0 + 4*(u - u0) .. +3 (64 bytes, one zmm) for unit u.

int8 inner step, per unit u (16 columns), plane i and half s (32 rows), one 64-byte load v:

    lo  = (v & 0x0F) | (16 * (byte % 4))        6-bit vpermb index: group * 16 + nibble
    hi  = ((v >> 4) & 0x0F) | (16 * (byte % 4))
    acc_lo = vpdpbusd(acc_lo, 2^i, vpermb(lo, T_u))  # int32 lane r += 2^i * sum of 4 groups
    acc_hi = vpdpbusd(acc_hi, 2^i, vpermb(hi, T_u))

Four int32 accumulators hold the 64 rows of a tile (rows 0-15, 16-31, 32-47, 48-63).  The
integer sums are exact, so their order is free; the float epilogue runs per block, 16 rows
per register, in the contract's order.
"""
from __future__ import annotations

import numpy as np

from tmac.kernels.epilogue import combine, group_params, weight_groups
from tmac.kernels.jit import njit, prange
from tmac.kernels.simd.generic import (add_f32, add_i32, cvt_i32_f32, load512, mul_f32, prefetch,
                                       set1_f32_512, set1_i8_512, set1_i32_512, srl_i16, srl_i32,
                                       store512, vand, vor, zero512)
from tmac.kernels.simd.x86 import dpbusd512, permb512, permps512
from tmac.kernels.tables import prepare_int8

PREFETCH_UNITS = 4      # software prefetch distance in the packed stream, in 16-column units


@njit(cache=True, inline="always")
def _block(l, sc, off, base, xv, cv):
    """The block values of 16 rows whose parameters sit at sc/off flat ``base``."""
    s, f = group_params(sc, off, base, cv)
    return combine(l, s, f, xv, cv, sc, off)


@njit(cache=True, inline="always")
def _epilogue4(y0, y1, y2, y3, l0, l1, l2, l3, sc, off, base, xs, cv):
    """y_q = y_q + block_q for 4 x 16 rows (tmac.kernels.epilogue; cv holds
    float32((2^b - 1)/2))."""
    xv = set1_f32_512(xs)
    y0 = add_f32(y0, _block(l0, sc, off, base, xv, cv))
    y1 = add_f32(y1, _block(l1, sc, off, base + 16, xv, cv))
    y2 = add_f32(y2, _block(l2, sc, off, base + 32, xv, cv))
    y3 = add_f32(y3, _block(l3, sc, off, base + 48, xv, cv))
    return y0, y1, y2, y3


@njit(cache=True, inline="always")
def _unit_int8(a0, a1, a2, a3, data, at, bits, t, low4, group_base):
    """Add one unit (16 columns, all planes, 64 rows) to the 4 row accumulators.

    data[at + 128*i + 64*s ...] is plane i, half s; t holds the unit's 4 int8 tables."""
    for i in range(bits):
        w = set1_i8_512(1 << i)
        prefetch(data, at + i * 128 + PREFETCH_UNITS * bits * 128)
        prefetch(data, at + i * 128 + PREFETCH_UNITS * bits * 128 + 64)
        v0 = load512(data, at + i * 128)
        v1 = load512(data, at + i * 128 + 64)
        a0 = dpbusd512(a0, w, permb512(vor(vand(v0, low4), group_base), t))
        a1 = dpbusd512(a1, w, permb512(vor(vand(srl_i16(v0, 4), low4), group_base), t))
        a2 = dpbusd512(a2, w, permb512(vor(vand(v1, low4), group_base), t))
        a3 = dpbusd512(a3, w, permb512(vor(vand(srl_i16(v1, 4), low4), group_base), t))
    return a0, a1, a2, a3


@njit(cache=True, inline="always")
def _indices(v, low4, group_base):
    """The two vpermb index registers of one packed register: low and high nibbles."""
    return vor(vand(v, low4), group_base), vor(vand(srl_i16(v, 4), low4), group_base)


@njit(cache=True, inline="always")
def _acc4(a0, a1, a2, a3, w, lo0, hi0, lo1, hi1, t):
    """One token's lookups of one plane (64 rows) into its 4 row accumulators."""
    return (dpbusd512(a0, w, permb512(lo0, t)), dpbusd512(a1, w, permb512(hi0, t)),
            dpbusd512(a2, w, permb512(lo1, t)), dpbusd512(a3, w, permb512(hi1, t)))


@njit(cache=True, inline="always")
def _epilogue_mem(out, o, a0, a1, a2, a3, hf, s0, s1, s2, s3, f0, f1, f2, f3, xs, cv, sc, off):
    """out[o:o+64] = out[o:o+64] + block, lut = float32(acc) * half (s*, f*: the block's group
    parameters for the tile's 4 x 16 rows, loaded once; tmac.kernels.epilogue)."""
    h = set1_f32_512(hf)
    xv = set1_f32_512(xs)
    store512(out, o, add_f32(load512(out, o), combine(mul_f32(cvt_i32_f32(a0), h), s0, f0, xv, cv, sc, off)))
    store512(out, o + 16, add_f32(load512(out, o + 16),
                                  combine(mul_f32(cvt_i32_f32(a1), h), s1, f1, xv, cv, sc, off)))
    store512(out, o + 32, add_f32(load512(out, o + 32),
                                  combine(mul_f32(cvt_i32_f32(a2), h), s2, f2, xv, cv, sc, off)))
    store512(out, o + 48, add_f32(load512(out, o + 48),
                                  combine(mul_f32(cvt_i32_f32(a3), h), s3, f3, xv, cv, sc, off)))


TOKEN_BLOCK = 4   # tokens whose lookups share one load and index preparation (N > 1)


@njit(cache=True, inline="always")
def _tile_1(data, tables, u0, u1, s0, half, xsum, wg, sc, off, out, tile, n, cv, low4, group_base):
    """One token, one 64-row tile: all blocks; y in registers, stored once.

    Units alternate between two sets of accumulators (a*, b*) so that 8 independent vpdpbusd
    chains hide its 5-cycle latency; the sets are added (exact int32) per block."""
    n_units, bits = data.shape[1], data.shape[2]
    n_groups, n_blocks = tables.shape[1], u0.shape[0]
    n_wg, m_pad = weight_groups(sc), out.shape[1]
    unit_bytes = bits * 128
    y0 = zero512(); y1 = zero512(); y2 = zero512(); y3 = zero512()
    for b in range(n_blocks):
        a0 = zero512(); a1 = zero512(); a2 = zero512(); a3 = zero512()
        b0 = zero512(); b1 = zero512(); b2 = zero512(); b3 = zero512()
        tab = (n * n_groups + s0[b]) * 16
        at = (tile * n_units + u0[b]) * unit_bytes
        n_u = u1[b] - u0[b]
        for _ in range(n_u >> 1):
            a0, a1, a2, a3 = _unit_int8(a0, a1, a2, a3, data, at, bits,
                                        load512(tables, tab), low4, group_base)
            b0, b1, b2, b3 = _unit_int8(b0, b1, b2, b3, data, at + unit_bytes, bits,
                                        load512(tables, tab + 64), low4, group_base)
            tab += 128
            at += 2 * unit_bytes
        if n_u & 1:
            a0, a1, a2, a3 = _unit_int8(a0, a1, a2, a3, data, at, bits,
                                        load512(tables, tab), low4, group_base)
        h = set1_f32_512(half[n, b])
        y0, y1, y2, y3 = _epilogue4(
            y0, y1, y2, y3,
            mul_f32(cvt_i32_f32(add_i32(a0, b0)), h), mul_f32(cvt_i32_f32(add_i32(a1, b1)), h),
            mul_f32(cvt_i32_f32(add_i32(a2, b2)), h), mul_f32(cvt_i32_f32(add_i32(a3, b3)), h),
            sc, off, (tile * n_wg + wg[b]) * 64, xsum[n, b], cv)
    o = n * m_pad + tile * 64
    store512(out, o, y0); store512(out, o + 16, y1)
    store512(out, o + 32, y2); store512(out, o + 48, y3)


@njit(cache=True, inline="always")
def _tile_4(data, tables, u0, u1, s0, half, xsum, wg, sc, off, out, tile, n, cv, low4, group_base):
    """Tokens n..n+3, one 64-row tile: each packed register is loaded and turned into vpermb
    indices once, then looked up in the 4 tokens' tables (16 accumulator chains). The outputs
    accumulate in ``out`` (block by block, in the contract's order) instead of registers."""
    n_units, bits = data.shape[1], data.shape[2]
    n_groups, n_blocks = tables.shape[1], u0.shape[0]
    n_wg, m_pad = weight_groups(sc), out.shape[1]
    unit_bytes = bits * 128
    z = zero512()
    for q in range(4):
        o = (n + q) * m_pad + tile * 64
        store512(out, o, z); store512(out, o + 16, z); store512(out, o + 32, z); store512(out, o + 48, z)
    tok_stride = n_groups * 16
    for b in range(n_blocks):
        a0 = zero512(); a1 = zero512(); a2 = zero512(); a3 = zero512()
        b0 = zero512(); b1 = zero512(); b2 = zero512(); b3 = zero512()
        c0 = zero512(); c1 = zero512(); c2 = zero512(); c3 = zero512()
        d0 = zero512(); d1 = zero512(); d2 = zero512(); d3 = zero512()
        tab = (n * n_groups + s0[b]) * 16
        at = (tile * n_units + u0[b]) * unit_bytes
        for _ in range(u1[b] - u0[b]):
            ta = load512(tables, tab)
            tb = load512(tables, tab + tok_stride)
            tc = load512(tables, tab + 2 * tok_stride)
            td = load512(tables, tab + 3 * tok_stride)
            for i in range(bits):
                w = set1_i8_512(1 << i)
                lo0, hi0 = _indices(load512(data, at + i * 128), low4, group_base)
                lo1, hi1 = _indices(load512(data, at + i * 128 + 64), low4, group_base)
                a0, a1, a2, a3 = _acc4(a0, a1, a2, a3, w, lo0, hi0, lo1, hi1, ta)
                b0, b1, b2, b3 = _acc4(b0, b1, b2, b3, w, lo0, hi0, lo1, hi1, tb)
                c0, c1, c2, c3 = _acc4(c0, c1, c2, c3, w, lo0, hi0, lo1, hi1, tc)
                d0, d1, d2, d3 = _acc4(d0, d1, d2, d3, w, lo0, hi0, lo1, hi1, td)
            tab += 64
            at += unit_bytes
        base = (tile * n_wg + wg[b]) * 64
        s0_, f0 = group_params(sc, off, base, cv)
        s1_, f1 = group_params(sc, off, base + 16, cv)
        s2_, f2 = group_params(sc, off, base + 32, cv)
        s3_, f3 = group_params(sc, off, base + 48, cv)
        o = n * m_pad + tile * 64
        _epilogue_mem(out, o, a0, a1, a2, a3, half[n, b], s0_, s1_, s2_, s3_, f0, f1, f2, f3,
                      xsum[n, b], cv, sc, off)
        _epilogue_mem(out, o + m_pad, b0, b1, b2, b3, half[n + 1, b], s0_, s1_, s2_, s3_,
                      f0, f1, f2, f3, xsum[n + 1, b], cv, sc, off)
        _epilogue_mem(out, o + 2 * m_pad, c0, c1, c2, c3, half[n + 2, b], s0_, s1_, s2_, s3_,
                      f0, f1, f2, f3, xsum[n + 2, b], cv, sc, off)
        _epilogue_mem(out, o + 3 * m_pad, d0, d1, d2, d3, half[n + 3, b], s0_, s1_, s2_, s3_,
                      f0, f1, f2, f3, xsum[n + 3, b], cv, sc, off)


@njit(cache=True, parallel=True)
def lut_int8(data, tables, blocks, half, xsum, sc, off, out, tiles_per_task):
    """int8 LUT GEMV/GEMM. tables (N, S, 16) int8 table slots (see module docstring).

    ``sc``/``off``: the group parameters in either form (tmac.kernels.epilogue).
    Per tile, tokens go TOKEN_BLOCK at a time (_tile_4), the rest one at a time (_tile_1).
    """
    u0, u1, s0, wg = blocks[0], blocks[1], blocks[2], blocks[3]
    n_tiles, bits = data.shape[0], data.shape[2]
    n_tok = tables.shape[0]
    n_tasks = -(-n_tiles // tiles_per_task)
    cv = set1_f32_512(((1 << bits) - 1) * 0.5)        # exact: 0.5, 1.5, 3.5, 7.5
    n4 = n_tok - n_tok % TOKEN_BLOCK
    for task in prange(n_tasks):
        low4 = set1_i8_512(15)
        group_base = set1_i32_512(0x30201000)          # byte k of each lane -> 16 * k
        for tile in range(task * tiles_per_task, min(n_tiles, (task + 1) * tiles_per_task)):
            for n in range(0, n4, TOKEN_BLOCK):
                _tile_4(data, tables, u0, u1, s0, half, xsum, wg, sc, off, out, tile, n, cv,
                        low4, group_base)
            for n in range(n4, n_tok):
                _tile_1(data, tables, u0, u1, s0, half, xsum, wg, sc, off, out, tile, n, cv,
                        low4, group_base)


@njit(cache=True, parallel=True)
def lut_float32(data, tables, blocks, xsum, sc, off, out, tiles_per_task):
    """float32 LUT GEMV/GEMM with vpermps: one group's 16 float entries fill one zmm and each
    int32 lane of a packed register, shifted by 8*(g%4) (+4 for the high nibbles), indexes it.
    Per plane, per 16 rows, the sum runs over g in increasing order (contract order)."""
    wg = blocks[3]
    n_tiles, n_units, bits = data.shape[0], data.shape[1], data.shape[2]
    n_tok, n_groups, n_blocks = tables.shape[0], tables.shape[1], blocks.shape[1]
    n_wg, m_pad = weight_groups(sc), out.shape[1]
    n_tasks = -(-n_tiles // tiles_per_task)
    cv = set1_f32_512(((1 << bits) - 1) * 0.5)
    for task in prange(n_tasks):
        for tile in range(task * tiles_per_task, min(n_tiles, (task + 1) * tiles_per_task)):
            for n in range(n_tok):
                y0 = zero512(); y1 = zero512(); y2 = zero512(); y3 = zero512()
                for b in range(n_blocks):
                    l0 = zero512(); l1 = zero512(); l2 = zero512(); l3 = zero512()
                    for i in range(bits):
                        f0 = zero512(); f1 = zero512(); f2 = zero512(); f3 = zero512()
                        for g in range(blocks[4, b] >> 2, blocks[5, b] >> 2):
                            t = load512(tables, (n * n_groups + g) * 16)
                            at = ((tile * n_units + (g >> 2)) * bits + i) * 128
                            sh = 8 * (g & 3)
                            v0 = load512(data, at)
                            v1 = load512(data, at + 64)
                            f0 = add_f32(f0, permps512(srl_i32(v0, sh), t))
                            f1 = add_f32(f1, permps512(srl_i32(v0, sh + 4), t))
                            f2 = add_f32(f2, permps512(srl_i32(v1, sh), t))
                            f3 = add_f32(f3, permps512(srl_i32(v1, sh + 4), t))
                        c = set1_f32_512(0.5 * (1 << i))
                        l0 = add_f32(l0, mul_f32(f0, c)); l1 = add_f32(l1, mul_f32(f1, c))
                        l2 = add_f32(l2, mul_f32(f2, c)); l3 = add_f32(l3, mul_f32(f3, c))
                    y0, y1, y2, y3 = _epilogue4(y0, y1, y2, y3, l0, l1, l2, l3,
                                                sc, off, (tile * n_wg + wg[b]) * 64, xsum[n, b], cv)
                o = n * m_pad + tile * 64
                store512(out, o, y0); store512(out, o + 16, y1)
                store512(out, o + 32, y2); store512(out, o + 48, y3)


@njit(cache=True)
def matmul_int8(x, blocks, data, sc, off, act_group_size, tiles_per_task):
    """A whole int8 LUT matmul in one compiled call: tables (tmac.kernels.tables.prepare_int8)
    then lut_int8; returns out (N, Mt * 64) float32.

    blocks   (7, nblocks) int64: rows u0, u1, s0, weight group, start, stop, act group
             (aligned plans: s0 = 4 * u0, the tables need no per-block copy)
    Few arguments on purpose: after a GEMV has streamed megabytes each one costs ~1 µs to
    unbox with cold caches; K units and act groups follow from ``data`` and ``blocks``.
    """
    k_units = data.shape[1] * 16
    k_padded = blocks[5, blocks.shape[1] - 1]
    n_act = (k_padded - 4) // act_group_size + 1
    qt, half, xsum = prepare_int8(x, k_units, act_group_size, n_act, blocks[4], blocks[5], blocks[6])
    out = np.empty((x.shape[0], data.shape[0] * 64), np.float32)
    lut_int8(data, qt, blocks, half, xsum, sc, off, out, tiles_per_task)
    return out
