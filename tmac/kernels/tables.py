"""Table build (mirror consolidation), int8 table quantization and block sums, in Numba.

All functions take the activations already padded: ``xp`` (N, Kpp) float32, C-contiguous,
Kpp a multiple of 16 (layout units), zero past the real K. Table group g covers
``xp[:, 4g:4g+4]``; groups past Kp/4 have all-zero activations and so all-zero tables.

Float order is exactly docs/numerics.md:

    T[g, j]      = (((x0 + s1*x1) + s2*x2) + s3*x3) + 0.0 for odd j (bit 0 set, s0 = +1),
    T[g, 15 - j] = (-T[g, j]) + 0.0          (mirror, exact; "+ 0.0" turns -0.0 into +0.0)
    absum[g]     = ((|x0| + |x1|) + |x2|) + |x3|
    scale[a]     = max absum / 127, inv = 1 / scale (0 if scale == 0)
    qT[g, j]     = clip(rint(T[g, j] * inv), -127, 127)           (rint(-v) == -rint(v))

Tables and table scales go 4 groups (one 16-column unit) at a time through vector-IR
primitives (tmac.kernels.simd.generic: generic LLVM IR, safe on any CPU); the mirror halves the
multiplies and roundings. build_tables_f32 and table_scales_scalar are the plain loops.
"""
from __future__ import annotations

import numpy as np

from tmac.kernels.jit import njit

from tmac.kernels.simd.generic import (absum4, hmax4_f32, load512, max_f32, set1_f32_512,
                                       store_tables4_f32, store_tables4_int8, zero512)


@njit(cache=True, inline="always")
def _odd_entries(x0, x1, x2, x3):
    """The 8 table entries with bit 0 set (j = 1, 3, ..., 15), float32, contract order."""
    return (((x0 - x1) - x2) - x3,    # j = 1:  + - - -
            ((x0 + x1) - x2) - x3,    # j = 3:  + + - -
            ((x0 - x1) + x2) - x3,    # j = 5:  + - + -
            ((x0 + x1) + x2) - x3,    # j = 7:  + + + -
            ((x0 - x1) - x2) + x3,    # j = 9:  + - - +
            ((x0 + x1) - x2) + x3,    # j = 11: + + - +
            ((x0 - x1) + x2) + x3,    # j = 13: + - + +
            ((x0 + x1) + x2) + x3)    # j = 15: + + + +


@njit(cache=True)
def build_tables_f32(xp, out):
    """Float tables. xp (N, Kpp) float32 -> out (N, Kpp // 4, 16) float32 (mirror build).

    Tables hold no negative zero (the contract's final "+ 0.0"); the int8 tables need no such
    step because rint(-0.0) converts to the integer 0.

    ``a - b`` equals ``a + (-b)`` bit for bit in IEEE arithmetic, so subtracting is the
    contract's ``sigma * x`` sign flip followed by the addition.
    """
    n_rows, kpp = xp.shape
    for n in range(n_rows):
        for g in range(kpp // 4):
            e = _odd_entries(xp[n, 4 * g], xp[n, 4 * g + 1], xp[n, 4 * g + 2], xp[n, 4 * g + 3])
            for h in range(8):
                out[n, g, 2 * h + 1] = e[h] + np.float32(0.0)
                out[n, g, 14 - 2 * h] = (-e[h]) + np.float32(0.0)


@njit(cache=True)
def table_scales(xp, act_group_size, scales):
    """Per activation group a (4-groups starting in [a*A, (a+1)*A)): max absum / 127.

    xp (N, Kpp) float32, scales (N, n_act_groups) float32 (output). n_act_groups is
    ceil(Kp / A); groups past Kp/4 have absum 0 and cannot change a maximum. When A is a
    multiple of 16 the absums of 4 groups come from one vector (simd.absum4, same order),
    else from the scalar loop (table_scales_scalar); a maximum is exact in any order.
    """
    if act_group_size % 16:
        table_scales_scalar(xp, act_group_size, scales)
        return
    n_rows, kpp = xp.shape
    n_groups, n_units, upa = scales.shape[1], kpp // 16, act_group_size // 16
    for n in range(n_rows):
        for a in range(n_groups):
            m = zero512()
            for u in range(a * upa, min(n_units, (a + 1) * upa)):
                m = max_f32(m, absum4(load512(xp, n * kpp + 16 * u)))
            scales[n, a] = hmax4_f32(m) / np.float32(127.0)


@njit(cache=True)
def table_scales_scalar(xp, act_group_size, scales):
    """table_scales one group at a time (any act group size)."""
    n_rows, kpp = xp.shape
    n_groups = scales.shape[1]
    for n in range(n_rows):
        for a in range(n_groups):
            best = np.float32(0.0)
            g_end = min(kpp // 4, -(-(a + 1) * act_group_size // 4))
            for g in range(-(-a * act_group_size // 4), g_end):
                s = ((abs(xp[n, 4 * g]) + abs(xp[n, 4 * g + 1])) + abs(xp[n, 4 * g + 2])) \
                    + abs(xp[n, 4 * g + 3])
                best = max(best, s)
            scales[n, a] = best / np.float32(127.0)


@njit(cache=True, inline="always")
def _q8(v, inv):
    """clip(rint(v * inv), -127, 127) as int8 (half to even)."""
    return np.int8(min(max(np.rint(v * inv), np.float32(-127.0)), np.float32(127.0)))


@njit(cache=True)
def build_tables_int8(xp, act_group_size, scales, out):
    """int8 tables. xp (N, Kpp) float32, scales (N, n_act_groups) float32 (from table_scales)
    -> out (N, Kpp // 4, 16) int8, quantized with 1/scale of the group's activation group.

    4 groups (one 16-column unit) at a time with simd.store_tables4_int8; groups past the last
    activation group (only zero padding) get inverse scale 0, i.e. all-zero tables."""
    n_rows, kpp = xp.shape
    n_act = scales.shape[1]
    inv = np.zeros(n_act + 1, np.float32)          # inv[n_act] = 0: groups past the last one
    lanes = np.zeros(16, np.float32)
    for r in range(n_rows):
        for a in range(n_act):
            inv[a] = np.float32(1.0) / scales[r, a] if scales[r, a] > 0 else np.float32(0.0)
        for u in range(kpp // 16):
            if act_group_size % 16 == 0:     # the unit's 4 groups share one act group
                iv = set1_f32_512(inv[min(16 * u // act_group_size, n_act)])
            else:
                for q in range(4):
                    lanes[4 * q] = inv[min((16 * u + 4 * q) // act_group_size, n_act)]
                iv = load512(lanes, 0)
            store_tables4_int8(out, (r * (kpp // 4) + 4 * u) * 16, load512(xp, r * kpp + 16 * u), iv)


@njit(cache=True)
def block_sums(xp, starts, stops, out):
    """xsum[n, b] = xp[n, starts[b]:stops[b]] summed left to right from 0.0 (float32).

    Blocks have one width B except perhaps the last; 8 blocks are summed side by side (8
    independent dependency chains, each in k order), the rest one by one.
    """
    n_rows, kpp = xp.shape
    n_blocks = starts.shape[0]
    width = stops[0] - starts[0]
    for n in range(n_rows):
        row = n * kpp
        b = 0
        if width > 0:
            while b + 8 <= n_blocks and stops[b + 7] - starts[b + 7] == width:
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
                k0 = row + starts[b]
                for j in range(k0, k0 + width):
                    a0 += xp.flat[j]; a1 += xp.flat[j + width]
                    a2 += xp.flat[j + 2 * width]; a3 += xp.flat[j + 3 * width]
                    a4 += xp.flat[j + 4 * width]; a5 += xp.flat[j + 5 * width]
                    a6 += xp.flat[j + 6 * width]; a7 += xp.flat[j + 7 * width]
                out[n, b] = a0; out[n, b + 1] = a1; out[n, b + 2] = a2; out[n, b + 3] = a3
                out[n, b + 4] = a4; out[n, b + 5] = a5; out[n, b + 6] = a6; out[n, b + 7] = a7
                b += 8
        for c in range(b, n_blocks):
            acc = np.float32(0.0)
            for k in range(starts[c], stops[c]):
                acc += xp[n, k]
            out[n, c] = acc


# ----------------------------------------------------------------------------- fused, vector
#
# One Numba call per matmul does everything before the lookup: padding, table scales, tables,
# block sums. The tables of 4 groups come from one vector-IR primitive (tmac.kernels.simd.generic,
# generic LLVM IR, safe on any CPU); results are identical to the scalar functions above.


@njit(cache=True)
def pad(x, k_units):
    """x (N, K) float32 -> (N, k_units) float32 with zero columns appended."""
    n, k = x.shape
    xp = np.zeros((n, k_units), np.float32)
    xp[:, :k] = x
    return xp


@njit(cache=True)
def prepare_int8(x, k_units, act_group_size, n_act, starts, stops, act_of_block):
    """x (N, K) float32 -> (tables (N, k_units/4, 16) int8, half (N, nblocks) float32,
    xsum (N, nblocks) float32) with half = table scale of the block's act group * 0.5."""
    xp = x if x.shape[1] == k_units else pad(x, k_units)
    n = xp.shape[0]
    scales = np.empty((n, n_act), np.float32)
    table_scales(xp, act_group_size, scales)
    qt = np.empty((n, k_units // 4, 16), np.int8)
    build_tables_int8(xp, act_group_size, scales, qt)
    xsum = np.empty((n, starts.shape[0]), np.float32)
    block_sums(xp, starts, stops, xsum)
    half = np.empty_like(xsum)
    for r in range(n):
        for b in range(starts.shape[0]):
            half[r, b] = scales[r, act_of_block[b]] * np.float32(0.5)
    return qt, half, xsum


@njit(cache=True)
def prepare_f32(x, k_units, starts, stops):
    """x (N, K) float32 -> (tables (N, k_units/4, 16) float32, xsum (N, nblocks) float32)."""
    xp = x if x.shape[1] == k_units else pad(x, k_units)
    n = xp.shape[0]
    t = np.empty((n, k_units // 4, 16), np.float32)
    for r in range(n):
        for u in range(k_units // 16):
            store_tables4_f32(t, (r * (k_units // 4) + 4 * u) * 16, load512(xp, r * k_units + 16 * u))
    xsum = np.empty((n, starts.shape[0]), np.float32)
    block_sums(xp, starts, stops, xsum)
    return t, xsum
