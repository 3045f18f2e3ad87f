"""LUT GEMV/GEMM with AVX2 (pshufb + pmaddubsw for int8 tables, vpermps for float32 tables).

Same packed layout, functions and arguments as every ISA path module (tmac.kernels.portable). A ymm register holds 32 bytes
of a packed 64-byte half: 8 rows x 4 table groups per nibble. ``pshufb`` looks up one
16-entry table per 128-bit lane, but each 4-byte lane of the register needs 4 different
groups' tables; so group q is looked up with its table broadcast to both lanes and with the
index bytes of the other 3 groups forced negative (bit 7 set -> pshufb writes 0), and the
four results are OR-ed. ``pmaddubsw`` (u8 plane weight 2^i x s8 entry, pairs) then
``pmaddwd`` with ones (pairs again) sum a row's 4 groups into its int32 lane.

The output rows of a tile are accumulated in ``out`` itself (16 ymm registers are too few to
hold them across blocks); each block adds scale * (lut + offset * xsum) in contract order.
"""
from __future__ import annotations

import numpy as np

from tmac.kernels.epilogue import combine, group_params, weight_groups
from tmac.kernels.jit import njit, prange
from tmac.kernels.simd.generic import (add_f32, add_i32, bcast128_256, cvt_i32_f32, load256, mul_f32,
                                       set1_f32_256, set1_i8_256, set1_i32_256, srl_i16, srl_i32,
                                       store256, vand, vor, zero256)
from tmac.kernels.simd.x86 import lut16_f32_256, maddubs256, maddwd256, pshufb256
from tmac.kernels.tables import prepare_int8


@njit(cache=True, inline="always")
def _lookup4(nib, t0, t1, t2, t3, m0, m1, m2, m3):
    """Byte 4r + q of the result = table q [nib byte 4r + q] (nib bytes in 0..15)."""
    return vor(vor(pshufb256(t0, vor(nib, m0)), pshufb256(t1, vor(nib, m1))),
               vor(pshufb256(t2, vor(nib, m2)), pshufb256(t3, vor(nib, m3))))


@njit(cache=True, inline="always")
def _epilogue(out, o, sc, off, base, acc, h, xv, cv, int_mode):
    """out[o:o+8] += block (tmac.kernels.epilogue), lut = float32(acc) * h (int8) or acc."""
    lut = mul_f32(cvt_i32_f32(acc), h) if int_mode else acc
    s, f = group_params(sc, off, base, cv)
    store256(out, o, add_f32(load256(out, o), combine(lut, s, f, xv, cv, sc, off)))


@njit(cache=True, parallel=True)
def lut_int8(data, tables, blocks, half, xsum, sc, off, out, tiles_per_task):
    """int8 LUT GEMV/GEMM (arguments as tmac.kernels.portable.lut_int8)."""
    u0, u1, s0, wg = blocks[0], blocks[1], blocks[2], blocks[3]
    n_tiles, n_units, bits = data.shape[0], data.shape[1], data.shape[2]
    n_tok, n_groups, n_blocks = tables.shape[0], tables.shape[1], blocks.shape[1]
    n_wg, m_pad = weight_groups(sc), out.shape[1]
    n_tasks = -(-n_tiles // tiles_per_task)
    cv = set1_f32_256(((1 << bits) - 1) * 0.5)
    for task in prange(n_tasks):
        low4 = set1_i8_256(15)
        ones = set1_i32_256(0x00010001)
        m0 = set1_i32_256(-2139062272)   # 0x80808000: keep byte 0 of each lane
        m1 = set1_i32_256(-2139094912)   # 0x80800080: keep byte 1
        m2 = set1_i32_256(-2147450752)   # 0x80008080: keep byte 2
        m3 = set1_i32_256(8421504)       # 0x00808080: keep byte 3
        for tile in range(task * tiles_per_task, min(n_tiles, (task + 1) * tiles_per_task)):
            for n in range(n_tok):
                o = n * m_pad + tile * 64
                for r in range(0, 64, 8):
                    store256(out, o + r, zero256())
                for b in range(n_blocks):
                    h = set1_f32_256(half[n, b])
                    xv = set1_f32_256(xsum[n, b])
                    base = (tile * n_wg + wg[b]) * 64
                    for s in range(2):
                        a0 = zero256(); a1 = zero256(); a2 = zero256(); a3 = zero256()
                        for u in range(u0[b], u1[b]):
                            tab = (n * n_groups + s0[b] + 4 * (u - u0[b])) * 16
                            t0 = bcast128_256(tables, tab); t1 = bcast128_256(tables, tab + 16)
                            t2 = bcast128_256(tables, tab + 32); t3 = bcast128_256(tables, tab + 48)
                            at = ((tile * n_units + u) * bits) * 128 + 64 * s
                            for i in range(bits):
                                w = set1_i8_256(1 << i)
                                va = load256(data, at + i * 128)
                                vb = load256(data, at + i * 128 + 32)
                                for_lo = _lookup4(vand(va, low4), t0, t1, t2, t3, m0, m1, m2, m3)
                                a0 = add_i32(a0, maddwd256(maddubs256(w, for_lo), ones))
                                for_lo = _lookup4(vand(vb, low4), t0, t1, t2, t3, m0, m1, m2, m3)
                                a1 = add_i32(a1, maddwd256(maddubs256(w, for_lo), ones))
                                for_hi = _lookup4(vand(srl_i16(va, 4), low4), t0, t1, t2, t3, m0, m1, m2, m3)
                                a2 = add_i32(a2, maddwd256(maddubs256(w, for_hi), ones))
                                for_hi = _lookup4(vand(srl_i16(vb, 4), low4), t0, t1, t2, t3, m0, m1, m2, m3)
                                a3 = add_i32(a3, maddwd256(maddubs256(w, for_hi), ones))
                        r0 = 32 * s        # a0: rows r0..+7, a1: +8.., a2 (high nibbles): +16.., a3: +24..
                        _epilogue(out, o + r0, sc, off, base + r0, a0, h, xv, cv, True)
                        _epilogue(out, o + r0 + 8, sc, off, base + r0 + 8, a1, h, xv, cv, True)
                        _epilogue(out, o + r0 + 16, sc, off, base + r0 + 16, a2, h, xv, cv, True)
                        _epilogue(out, o + r0 + 24, sc, off, base + r0 + 24, a3, h, xv, cv, True)


@njit(cache=True, parallel=True)
def lut_float32(data, tables, blocks, xsum, sc, off, out, tiles_per_task):
    """float32 LUT GEMV/GEMM (arguments as tmac.kernels.portable.lut_float32).

    The 16 float entries of a group span two ymm; each int32 lane of a packed ymm, shifted by
    8*(g%4) (+4 for high nibbles), indexes them through lut16_f32_256."""
    wg = blocks[3]
    n_tiles, n_units, bits = data.shape[0], data.shape[1], data.shape[2]
    n_tok, n_groups, n_blocks = tables.shape[0], tables.shape[1], blocks.shape[1]
    n_wg, m_pad = weight_groups(sc), out.shape[1]
    n_tasks = -(-n_tiles // tiles_per_task)
    cv = set1_f32_256(((1 << bits) - 1) * 0.5)
    for task in prange(n_tasks):
        for tile in range(task * tiles_per_task, min(n_tiles, (task + 1) * tiles_per_task)):
            for n in range(n_tok):
                o = n * m_pad + tile * 64
                for r in range(0, 64, 8):
                    store256(out, o + r, zero256())
                for b in range(n_blocks):
                    xv = set1_f32_256(xsum[n, b])
                    base = (tile * n_wg + wg[b]) * 64
                    for s in range(2):
                        l0 = zero256(); l1 = zero256(); l2 = zero256(); l3 = zero256()
                        for i in range(bits):
                            f0 = zero256(); f1 = zero256(); f2 = zero256(); f3 = zero256()
                            for g in range(blocks[4, b] >> 2, blocks[5, b] >> 2):
                                tlo = load256(tables, (n * n_groups + g) * 16)
                                thi = load256(tables, (n * n_groups + g) * 16 + 8)
                                at = ((tile * n_units + (g >> 2)) * bits + i) * 128 + 64 * s
                                sh = 8 * (g & 3)
                                va = load256(data, at)
                                vb = load256(data, at + 32)
                                f0 = add_f32(f0, lut16_f32_256(srl_i32(va, sh), tlo, thi))
                                f1 = add_f32(f1, lut16_f32_256(srl_i32(vb, sh), tlo, thi))
                                f2 = add_f32(f2, lut16_f32_256(srl_i32(va, sh + 4), tlo, thi))
                                f3 = add_f32(f3, lut16_f32_256(srl_i32(vb, sh + 4), tlo, thi))
                            c = set1_f32_256(0.5 * (1 << i))
                            l0 = add_f32(l0, mul_f32(f0, c)); l1 = add_f32(l1, mul_f32(f1, c))
                            l2 = add_f32(l2, mul_f32(f2, c)); l3 = add_f32(l3, mul_f32(f3, c))
                        r0 = 32 * s
                        _epilogue(out, o + r0, sc, off, base + r0, l0, xv, xv, cv, False)
                        _epilogue(out, o + r0 + 8, sc, off, base + r0 + 8, l1, xv, xv, cv, False)
                        _epilogue(out, o + r0 + 16, sc, off, base + r0 + 16, l2, xv, xv, cv, False)
                        _epilogue(out, o + r0 + 24, sc, off, base + r0 + 24, l3, xv, xv, cv, False)


@njit(cache=True)
def matmul_int8(x, blocks, data, sc, off, act_group_size, tiles_per_task):
    """A whole int8 LUT matmul in one compiled call (aligned plans): tables, then lut_int8."""
    k_padded = blocks[5, blocks.shape[1] - 1]
    n_act = (k_padded - 4) // act_group_size + 1
    qt, half, xsum = prepare_int8(x, data.shape[1] * 16, act_group_size, n_act, blocks[4],
                                  blocks[5], blocks[6])
    out = np.empty((x.shape[0], data.shape[0] * 64), np.float32)
    lut_int8(data, qt, blocks, half, xsum, sc, off, out, tiles_per_task)
    return out
