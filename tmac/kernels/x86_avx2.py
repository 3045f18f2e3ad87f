"""LUT GEMV/GEMM with AVX2 (pshufb + pmaddubsw for int8 tables, vpermps for float32 tables).

Same packed layout, functions and arguments as every ISA path module (tmac.kernels.portable).

int8 tables. ``pshufb`` looks up one 16-entry table per 128-bit lane, but a packed ymm holds,
in every 4-byte lane, one row's indices for 4 different groups (tmac.layout: byte 4r + q; the
layout is made for AVX-512's 64-entry ``vpermb``). So the index bytes are first rearranged in
registers, with in-lane shuffles only, until every lane holds one group:

    per half (32 rows), unit (4 groups), planes i and j = i + 1 (4 ymm loads, 128 bytes):
    pshufb (constant)    each lane: rows 0-3 of group 0, of group 1, 2, 3          4 shuffles
    unpack{lo,hi} bytes  plane i and plane j side by side, per row                  4
    unpack{lo,hi} qwords rows 0-3 with rows 8-11 (4-7 with 12-15): one group per
                         register, 8 rows x 2 planes per lane                       4
    per group: pshufb with its table in both lanes, low and high nibbles           8
               pmaddubsw by (2^i, 2^j): both planes weighed and added per row
               int16 adds over the 4 groups into 2 accumulators (16 rows each)

20 shuffles per 128 packed bytes where the masked look-up of every group in every register
took 32 and as many ORs. The int16 accumulators go into int32 before they could overflow
(``ROOM``: a lane may sum 258 entries of |127| x plane weight; wrapping int16 adds are exact
when the total fits); planes 6 and 7 go in a second pass weighing 1 and 2, shifted by 6. An
odd last plane pairs the tile's two halves instead of two planes (two pmaddubsw, by (2^i, 0) and
(0, 2^i), take the halves apart); with two tokens at a time it is paired with itself at weight 0. Integer sums are exact, so their order is
free; the rows come out as 0-3 8-11 | 4-7 12-15 and are put in order once per block.

The output rows of a tile are accumulated in ``out`` itself (16 ymm registers are too few to
hold them across blocks); each block adds scale * (lut + offset * xsum) in contract order.
"""
from __future__ import annotations

import numpy as np

from tmac.kernels.epilogue import combine, group_params, weight_groups
from tmac.kernels.jit import njit, prange
from tmac.kernels.simd.generic import (add_f32, add_i16, add_i32, bcast128_256,
                                       cvt_i32_f32, lanes_hi, lanes_lo, load256, mul_f32,
                                       set1_f32_256, set1_i8_256, set1_i16_256, sll_i32, srl_i16,
                                       srl_i32, store256, unpackhi_i8, unpackhi_i64, unpacklo_i8,
                                       unpacklo_i64, vand, vor, widen_hi_i16, widen_lo_i16, zero256)
from tmac.kernels.simd.x86 import lut16_f32_256, maddubs256, pshufb256
from tmac.kernels.tables import prepare_int8


@njit(cache=True, inline="always")
def _epilogue(out, o, sc, off, base, acc, h, xv, cv, int_mode):
    """out[o:o+8] += block (tmac.kernels.epilogue), lut = float32(acc) * h (int8) or acc."""
    lut = mul_f32(cvt_i32_f32(acc), h) if int_mode else acc
    s, f = group_params(sc, off, base, cv)
    store256(out, o, add_f32(load256(out, o), combine(lut, s, f, xv, cv, sc, off)))


def _transpose_mask():
    """Per 128-bit lane, byte 4q + r of the result = byte 4r + q of a packed ymm: the lane's 4
    rows of group 0, then of group 1, 2, 3."""
    return [16 * (t // 16) + 4 * (t % 4) + (t % 16) // 4 for t in range(32)]


TRANSPOSE = np.array(_transpose_mask(), np.int8)
ROOM = 32767 // 127       # int8 entries (times their plane weight) an int16 lane can sum
HIGH_PLANES = 6           # planes from here on weigh 2^(i - 6) in accumulators shifted by 6


@njit(cache=True, inline="always")
def _opaque_transpose(bits):
    """The transpose mask as a register LLVM cannot see through (``bits >> 8`` is 0, but not
    to the compiler): with a constant mask LLVM merges the transpose into the unpacks that
    follow and emits more shuffles than it saves."""
    return vor(load256(TRANSPOSE, 0), set1_i8_256(bits >> 8))


@njit(cache=True, inline="always")
def _group_registers(data, at, at2, transpose):
    """The index bytes of planes i (at ``at``) and j (at ``at2``; j = i for a lone plane) of a
    half, one register per group q = 0..3: its low 128-bit lane holds rows 0-3 and 8-11, its
    high lane rows 4-7 and 12-15 (and 16 more in the high nibbles), the two planes' bytes
    side by side for each row."""
    a_i = pshufb256(load256(data, at), transpose); a_j = pshufb256(load256(data, at2), transpose)
    b_i = pshufb256(load256(data, at + 32), transpose); b_j = pshufb256(load256(data, at2 + 32), transpose)
    a01 = unpacklo_i8(a_i, a_j); a23 = unpackhi_i8(a_i, a_j)    # [rows 0-3 of g0 | of g1] ...
    b01 = unpacklo_i8(b_i, b_j); b23 = unpackhi_i8(b_i, b_j)    # the same for rows 8-11
    return (unpacklo_i64(a01, b01), unpackhi_i64(a01, b01),
            unpacklo_i64(a23, b23), unpackhi_i64(a23, b23))


@njit(cache=True, inline="always")
def _lookup(t, r, w2, low4):
    """int16 per row of one group's register: low and high nibbles looked up in table t and
    weighed by w2 (bytes: plane i's weight, plane j's)."""
    return (maddubs256(w2, pshufb256(t, vand(r, low4))),
            maddubs256(w2, pshufb256(t, vand(srl_i16(r, 4), low4))))


@njit(cache=True, inline="always")
def _sum_groups(r0, r1, r2, r3, tables, t, w2, low4):
    """int16 sums over the 4 groups (registers r*, tables at flat ``t``) of one or two planes:
    rows of the low nibbles, of the high."""
    l0, h0 = _lookup(bcast128_256(tables, t), r0, w2, low4)
    l1, h1 = _lookup(bcast128_256(tables, t + 16), r1, w2, low4)
    l2, h2 = _lookup(bcast128_256(tables, t + 32), r2, w2, low4)
    l3, h3 = _lookup(bcast128_256(tables, t + 48), r3, w2, low4)
    return add_i16(add_i16(l0, l1), add_i16(l2, l3)), add_i16(add_i16(h0, h1), add_i16(h2, h3))


@njit(cache=True, inline="always")
def _sum_groups_halves(r0, r1, r2, r3, tables, t, w_a, w_b, low4):
    """_sum_groups of registers that hold one plane of two halves side by side (a lone plane):
    w_a weighs the first byte of each pair (half 0), w_b the second (half 1). Returns the
    first half's rows (low, high nibbles), then the second's."""
    la = zero256(); ha = zero256(); lb = zero256(); hb = zero256()
    for q, r in enumerate((r0, r1, r2, r3)):
        tq = bcast128_256(tables, t + 16 * q)
        lo = pshufb256(tq, vand(r, low4))
        hi = pshufb256(tq, vand(srl_i16(r, 4), low4))
        la = add_i16(la, maddubs256(w_a, lo)); lb = add_i16(lb, maddubs256(w_b, lo))
        ha = add_i16(ha, maddubs256(w_a, hi)); hb = add_i16(hb, maddubs256(w_b, hi))
    return la, ha, lb, hb


@njit(cache=True, inline="always")
def _step(i, first, last, used):
    """The step of a pass at plane i: (j, the pmaddubsw weights of planes i and j, whether the
    int16 sums must go into int32 first, the int16 budget used after it). j = i + 1, or i for a
    lone last plane (weight 0 on its copy)."""
    j = i + 1 if i + 1 < last else i
    p = i - first
    weight = 4 * (3 << p if j > i else 1 << p)
    flush = used + weight > ROOM
    return j, (1 << p) | ((2 << p) << 8 if j > i else 0), flush, (0 if flush else used) + weight


@njit(cache=True, inline="always")
def _flush(c0, c1, c2, c3, lo, hi, shift):
    """int32 sums += the int16 ones (rows 0-3 8-11 | 4-7 12-15 of each nibble), << shift."""
    return (add_i32(c0, sll_i32(widen_lo_i16(lo), shift)), add_i32(c1, sll_i32(widen_hi_i16(lo), shift)),
            add_i32(c2, sll_i32(widen_lo_i16(hi), shift)), add_i32(c3, sll_i32(widen_hi_i16(hi), shift)))


@njit(cache=True, inline="always")
def _pass_tile(c0, c1, c2, c3, e0, e1, e2, e3, data, tables, at, tab, n_u, unit_bytes, first,
               last, low4, transpose):
    """c* (half 0), e* (half 1) += the lookups of planes first..last-1 over ``n_u`` units, two
    planes at a time (one pshufb looks both up, one pmaddubsw weighs both) into int16
    accumulators that go into int32 before they could overflow (wrapping int16 adds are exact
    whenever the total fits); plane i weighs 2^(i - first), the int32 sums are shifted by
    ``first``. A lone last plane pairs the two halves instead of two planes."""
    lo = zero256(); hi = zero256(); lo1 = zero256(); hi1 = zero256()
    used = 0
    for u in range(n_u):
        at_u = at + u * unit_bytes
        t = tab + 64 * u
        for i in range(first, last, 2):
            j, weights, flush, used = _step(i, first, last, used)
            if flush:
                c0, c1, c2, c3 = _flush(c0, c1, c2, c3, lo, hi, first)
                e0, e1, e2, e3 = _flush(e0, e1, e2, e3, lo1, hi1, first)
                lo = zero256(); hi = zero256(); lo1 = zero256(); hi1 = zero256()
            if j > i:
                w2 = set1_i16_256(weights)
                r0, r1, r2, r3 = _group_registers(data, at_u + i * 128, at_u + j * 128, transpose)
                sl, sh = _sum_groups(r0, r1, r2, r3, tables, t, w2, low4)
                lo = add_i16(lo, sl); hi = add_i16(hi, sh)
                r0, r1, r2, r3 = _group_registers(data, at_u + i * 128 + 64, at_u + j * 128 + 64,
                                                  transpose)
                sl, sh = _sum_groups(r0, r1, r2, r3, tables, t, w2, low4)
            else:
                r0, r1, r2, r3 = _group_registers(data, at_u + i * 128, at_u + i * 128 + 64,
                                                  transpose)
                sl, sh, sl1, sh1 = _sum_groups_halves(r0, r1, r2, r3, tables, t,
                                                      set1_i16_256(weights),
                                                      set1_i16_256(weights << 8), low4)
                lo = add_i16(lo, sl); hi = add_i16(hi, sh)
                sl, sh = sl1, sh1
            lo1 = add_i16(lo1, sl); hi1 = add_i16(hi1, sh)
    c0, c1, c2, c3 = _flush(c0, c1, c2, c3, lo, hi, first)
    e0, e1, e2, e3 = _flush(e0, e1, e2, e3, lo1, hi1, first)
    return c0, c1, c2, c3, e0, e1, e2, e3


@njit(cache=True, inline="always")
def _pass2(c0, c1, c2, c3, d0, d1, d2, d3, data, tables, at, tab, tab2, n_u, unit_bytes, first,
           last, low4, transpose):
    """_pass_tile on one half for two tokens (tables at ``tab``, ``tab2``; sums c*, d*): the
    index registers are made once for both; a lone last plane is paired with itself (weight 0
    on the copy)."""
    lo = zero256(); hi = zero256(); lo2 = zero256(); hi2 = zero256()
    used = 0
    for u in range(n_u):
        at_u = at + u * unit_bytes
        for i in range(first, last, 2):
            j, weights, flush, used = _step(i, first, last, used)
            if flush:
                c0, c1, c2, c3 = _flush(c0, c1, c2, c3, lo, hi, first)
                d0, d1, d2, d3 = _flush(d0, d1, d2, d3, lo2, hi2, first)
                lo = zero256(); hi = zero256(); lo2 = zero256(); hi2 = zero256()
            w2 = set1_i16_256(weights)
            r0, r1, r2, r3 = _group_registers(data, at_u + i * 128, at_u + j * 128, transpose)
            sl, sh = _sum_groups(r0, r1, r2, r3, tables, tab + 64 * u, w2, low4)
            lo = add_i16(lo, sl); hi = add_i16(hi, sh)
            sl, sh = _sum_groups(r0, r1, r2, r3, tables, tab2 + 64 * u, w2, low4)
            lo2 = add_i16(lo2, sl); hi2 = add_i16(hi2, sh)
    c0, c1, c2, c3 = _flush(c0, c1, c2, c3, lo, hi, first)
    d0, d1, d2, d3 = _flush(d0, d1, d2, d3, lo2, hi2, first)
    return c0, c1, c2, c3, d0, d1, d2, d3


@njit(cache=True, inline="always")
def _in_order(c0, c1, c2, c3):
    """The 4 int32 registers of a half with rows 0-7, 8-15, 16-23, 24-31 (from 0-3 8-11 |
    4-7 12-15 of each nibble)."""
    return lanes_lo(c0, c1), lanes_hi(c0, c1), lanes_lo(c2, c3), lanes_hi(c2, c3)


@njit(cache=True, inline="always")
def _tile_block(data, tables, at, tab, n_u, bits, unit_bytes, low4, transpose):
    """The exact int32 block sums of a tile's 64 rows over ``n_u`` units, as 8 registers of 8
    rows in order (half 0: 0-7, 8-15 from the low nibbles, 16-23, 24-31 from the high ones;
    then half 1). Planes 6 and 7 go in a second pass with weights 1 and 2, shifted by 6."""
    z = zero256()
    c0, c1, c2, c3, e0, e1, e2, e3 = _pass_tile(z, z, z, z, z, z, z, z, data, tables, at, tab,
                                                n_u, unit_bytes, 0, min(bits, HIGH_PLANES),
                                                low4, transpose)
    if bits > HIGH_PLANES:
        c0, c1, c2, c3, e0, e1, e2, e3 = _pass_tile(c0, c1, c2, c3, e0, e1, e2, e3, data,
                                                    tables, at, tab, n_u, unit_bytes,
                                                    HIGH_PLANES, bits, low4, transpose)
    a0, a1, a2, a3 = _in_order(c0, c1, c2, c3)
    b0, b1, b2, b3 = _in_order(e0, e1, e2, e3)
    return a0, a1, a2, a3, b0, b1, b2, b3


@njit(cache=True, inline="always")
def _half_block2(data, tables, at, tab, tab2, n_u, bits, unit_bytes, low4, transpose):
    """One half's block sums for two tokens (_pass2): 8 registers in order, the first token's 4
    then the second's."""
    z = zero256()
    c0, c1, c2, c3, d0, d1, d2, d3 = _pass2(z, z, z, z, z, z, z, z, data, tables, at, tab, tab2,
                                            n_u, unit_bytes, 0, min(bits, HIGH_PLANES), low4,
                                            transpose)
    if bits > HIGH_PLANES:
        c0, c1, c2, c3, d0, d1, d2, d3 = _pass2(c0, c1, c2, c3, d0, d1, d2, d3, data, tables, at,
                                                tab, tab2, n_u, unit_bytes, HIGH_PLANES, bits,
                                                low4, transpose)
    e0, e1, e2, e3 = _in_order(c0, c1, c2, c3)
    f0, f1, f2, f3 = _in_order(d0, d1, d2, d3)
    return e0, e1, e2, e3, f0, f1, f2, f3


@njit(cache=True, inline="always")
def _epilogue4(out, o, sc, off, base, a0, a1, a2, a3, h, xv, cv):
    """out[o:o+32] += the blocks of one half (32 rows, parameters at ``base``)."""
    _epilogue(out, o, sc, off, base, a0, h, xv, cv, True)
    _epilogue(out, o + 8, sc, off, base + 8, a1, h, xv, cv, True)
    _epilogue(out, o + 16, sc, off, base + 16, a2, h, xv, cv, True)
    _epilogue(out, o + 24, sc, off, base + 24, a3, h, xv, cv, True)


@njit(cache=True, inline="always")
def _zero_tile(out, o):
    for r in range(0, 64, 8):
        store256(out, o + r, zero256())


@njit(cache=True, inline="always")
def _dims(data, tables, blocks, sc, out):
    """(units per tile, bits, bytes per unit, table slots per token, blocks, weight groups,
    padded rows M)."""
    bits = data.shape[2]
    return (data.shape[1], bits, bits * 128, tables.shape[1], blocks.shape[1], weight_groups(sc),
            out.shape[1])


@njit(cache=True)
def _token_pairs(data, tables, blocks, half, xsum, sc, off, out, tile0, tile1, cv):
    """out rows of tiles ``tile0 .. tile1 - 1`` for tokens 0 .. 2 * (n_tok // 2) - 1, two at a
    time (one set of index registers looked up in both tokens' tables). A function of its own,
    called per task: LLVM compiles two mid-sized functions in half the time of their inlined
    sum (a fresh compile of matmul_int8: ~30 s against 52 s), as fast."""
    n_units, bits, unit_bytes, n_groups, n_blocks, n_wg, m_pad = _dims(data, tables, blocks, sc,
                                                                       out)
    u0, u1, s0, wg = blocks[0], blocks[1], blocks[2], blocks[3]
    low4, transpose = set1_i8_256(15), _opaque_transpose(bits)
    for tile in range(tile0, tile1):
        for pair in range(tables.shape[0] // 2):
            n = 2 * pair
            o = n * m_pad + tile * 64
            _zero_tile(out, o)
            _zero_tile(out, o + m_pad)
            for b in range(n_blocks):
                base = (tile * n_wg + wg[b]) * 64
                tab = (n * n_groups + s0[b]) * 16
                for s in range(2):
                    at = (tile * n_units + u0[b]) * unit_bytes + 64 * s
                    a0, a1, a2, a3, b0, b1, b2, b3 = _half_block2(
                        data, tables, at, tab, tab + n_groups * 16, u1[b] - u0[b], bits,
                        unit_bytes, low4, transpose)
                    _epilogue4(out, o + 32 * s, sc, off, base + 32 * s, a0, a1, a2, a3,
                               set1_f32_256(half[n, b]), set1_f32_256(xsum[n, b]), cv)
                    _epilogue4(out, o + m_pad + 32 * s, sc, off, base + 32 * s, b0, b1, b2,
                               b3, set1_f32_256(half[n + 1, b]), set1_f32_256(xsum[n + 1, b]),
                               cv)


@njit(cache=True)
def _one_token(data, tables, blocks, half, xsum, sc, off, out, tile0, tile1, n, cv):
    """out rows of tiles ``tile0 .. tile1 - 1`` for token ``n`` alone (decode; the odd last
    token of a prefill): both halves of a tile in one pass."""
    n_units, bits, unit_bytes, n_groups, n_blocks, n_wg, m_pad = _dims(data, tables, blocks, sc,
                                                                       out)
    u0, u1, s0, wg = blocks[0], blocks[1], blocks[2], blocks[3]
    low4, transpose = set1_i8_256(15), _opaque_transpose(bits)
    for tile in range(tile0, tile1):
        o = n * m_pad + tile * 64
        _zero_tile(out, o)
        for b in range(n_blocks):
            base = (tile * n_wg + wg[b]) * 64
            at = (tile * n_units + u0[b]) * unit_bytes
            a0, a1, a2, a3, b0, b1, b2, b3 = _tile_block(
                data, tables, at, (n * n_groups + s0[b]) * 16, u1[b] - u0[b], bits,
                unit_bytes, low4, transpose)
            h, xv = set1_f32_256(half[n, b]), set1_f32_256(xsum[n, b])
            _epilogue4(out, o, sc, off, base, a0, a1, a2, a3, h, xv, cv)
            _epilogue4(out, o + 32, sc, off, base + 32, b0, b1, b2, b3, h, xv, cv)


@njit(cache=True, parallel=True)
def lut_int8(data, tables, blocks, half, xsum, sc, off, out, tiles_per_task):
    """int8 LUT GEMV/GEMM (arguments as tmac.kernels.portable.lut_int8). Tokens go two at a
    time (one set of index registers looked up in both tokens' tables), an odd last one alone."""
    n_tiles, bits, n_tok = data.shape[0], data.shape[2], tables.shape[0]
    n_tasks = -(-n_tiles // tiles_per_task)
    cv = set1_f32_256(((1 << bits) - 1) * 0.5)
    for task in prange(n_tasks):
        tile0, tile1 = task * tiles_per_task, min(n_tiles, (task + 1) * tiles_per_task)
        if n_tok > 1:
            _token_pairs(data, tables, blocks, half, xsum, sc, off, out, tile0, tile1, cv)
        if n_tok % 2:
            _one_token(data, tables, blocks, half, xsum, sc, off, out, tile0, tile1, n_tok - 1,
                       cv)


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
