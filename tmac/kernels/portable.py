"""LUT GEMV/GEMM in plain Numba: runs on any CPU, defines the loop structure the SIMD paths share.

Every ISA path module (this one, ``x86_avx2``, ``x86_avx512``; ``tmac.kernels.dispatch.PATHS``)
defines the same three functions with the same arguments (all C-contiguous; see
tmac.kernels.lut.plan):

    lut_int8(data, tables, blocks, half, xsum, sc, off, out, tiles_per_task)
    lut_float32(data, tables, blocks, xsum, sc, off, out, tiles_per_task)
    matmul_int8(x, blocks, data, sc, off, act_group_size, tiles_per_task) -> out

    data     (Mt, U, bits, 2, 64) uint8     packed codes (tmac.layout)
    tables   int8: (N, S, 16) table slots: block b reads unit u (u0 <= u < u1) from the 4 slots
             s0 + 4*(u - u0) .. + 3 (aligned plans: the plain tables, s0 = 4*u0; otherwise
             per-block copies whose groups outside the block are zero, tmac.kernels.lut.unit_slots)
             float32: (N, G, 16) plain tables, G = 4 * U groups per activation row
    blocks   (7, nblocks) int64                rows u0, u1, s0, weight group, start, stop,
                                              activation group of each block
    half     (N, nblocks) float32            int8 mode: table scale of the block's act group * 0.5
    xsum     (N, nblocks) float32            block sums of the activations
    sc, off  (Mt, n_weight_groups, 64)        the group parameters, 64 rows contiguous, in one of
                                              two forms (tmac.kernels.epilogue): float32 scales
                                              and zeros (uint8 or float32), or float16 scales and
                                              offsets (uint16 bit patterns: the affine form)
    out      (N, Mt * 64) float32            output (rows past M are garbage-free zeros)
    tiles_per_task                           row tiles (64 rows) per parallel task
    x        (N, K) float32                  matmul_int8: tables built in the same compiled call
                                              (aligned plans only)

Parallel over row tiles only: every (row, block) reduction runs on one thread in one order,
so results do not depend on the thread count.
"""
from __future__ import annotations

import numpy as np

from tmac.kernels.epilogue import combine_scalar, group_params_scalar
from tmac.kernels.jit import njit, prange
from tmac.kernels.tables import prepare_int8

PLANE_WEIGHTS = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0], np.float32)   # 2^(i-1)


@njit(cache=True, inline="always")
def _epilogue(y, lut, sc, off, tile, wg, xs, c):
    """y[r] = y[r] + block[r] for the 64 rows of one tile (tmac.kernels.epilogue's forms)."""
    for r in range(64):
        s, f = group_params_scalar(sc, off, tile, wg, r, c)
        y[r] = y[r] + combine_scalar(lut[r], s, f, xs, c, sc, off)


@njit(cache=True, parallel=True)
def lut_int8(data, tables, blocks, half, xsum, sc, off, out, tiles_per_task):
    """int8 tables: P = sum_i 2^i sum_g qT[g, idx] exactly in int32, lut = float32(P) * half."""
    n_tiles, bits = data.shape[0], data.shape[2]
    n_tok, n_blocks = tables.shape[0], blocks.shape[1]
    n_tasks = -(-n_tiles // tiles_per_task)
    c = np.float32(((1 << bits) - 1) * 0.5)
    for task in prange(n_tasks):
        acc = np.zeros(64, np.int32)
        lut = np.zeros(64, np.float32)
        y = np.zeros(64, np.float32)
        for tile in range(task * tiles_per_task, min(n_tiles, (task + 1) * tiles_per_task)):
            for n in range(n_tok):
                y[:] = 0
                for b in range(n_blocks):
                    acc[:] = 0
                    u0, u1, s0 = blocks[0, b], blocks[1, b], blocks[2, b]
                    for u in range(u0, u1):
                        slot = s0 + 4 * (u - u0)
                        t0, t1 = tables[n, slot], tables[n, slot + 1]
                        t2, t3 = tables[n, slot + 2], tables[n, slot + 3]
                        for i in range(bits):
                            for s in range(2):
                                d = data[tile, u, i, s]
                                for r in range(16):
                                    b0, b1, b2, b3 = d[4 * r], d[4 * r + 1], d[4 * r + 2], d[4 * r + 3]
                                    lo = (np.int32(t0[b0 & 15]) + np.int32(t1[b1 & 15])
                                          + np.int32(t2[b2 & 15]) + np.int32(t3[b3 & 15]))
                                    hi = (np.int32(t0[b0 >> 4]) + np.int32(t1[b1 >> 4])
                                          + np.int32(t2[b2 >> 4]) + np.int32(t3[b3 >> 4]))
                                    acc[32 * s + r] += lo << i
                                    acc[32 * s + 16 + r] += hi << i
                    for r in range(64):
                        lut[r] = np.float32(acc[r]) * half[n, b]
                    _epilogue(y, lut, sc, off, tile, blocks[3, b], xsum[n, b], c)
                out[n, tile * 64:tile * 64 + 64] = y


@njit(cache=True, parallel=True)
def lut_float32(data, tables, blocks, xsum, sc, off, out, tiles_per_task):
    """float32 tables: F_i = sum_g T[g, idx_i] from 0.0 in increasing g, lut = sum_i F_i * 2^(i-1)
    left to right from 0.0."""
    n_tiles, bits = data.shape[0], data.shape[2]
    n_tok, n_blocks = tables.shape[0], blocks.shape[1]
    n_tasks = -(-n_tiles // tiles_per_task)
    c = np.float32(((1 << bits) - 1) * 0.5)
    for task in prange(n_tasks):
        plane = np.zeros(64, np.float32)
        lut = np.zeros(64, np.float32)
        y = np.zeros(64, np.float32)
        for tile in range(task * tiles_per_task, min(n_tiles, (task + 1) * tiles_per_task)):
            for n in range(n_tok):
                y[:] = 0
                for b in range(n_blocks):
                    lut[:] = 0
                    for i in range(bits):
                        plane[:] = 0
                        for g in range(blocks[4, b] >> 2, blocks[5, b] >> 2):
                            u, q = g >> 2, g & 3
                            for s in range(2):
                                for r in range(16):
                                    byte = data[tile, u, i, s, 4 * r + q]
                                    plane[32 * s + r] += tables[n, g, byte & 15]
                                    plane[32 * s + 16 + r] += tables[n, g, byte >> 4]
                        for r in range(64):
                            lut[r] = lut[r] + plane[r] * PLANE_WEIGHTS[i]
                    _epilogue(y, lut, sc, off, tile, blocks[3, b], xsum[n, b], c)
                out[n, tile * 64:tile * 64 + 64] = y


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
