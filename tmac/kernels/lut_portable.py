"""LUT GEMV/GEMM in plain Numba: runs on any CPU, defines the loop structure the SIMD paths share.

Arguments shared by every LUT kernel (all C-contiguous; see tmac.kernels.lut.plan):

    data     (Mt, U, bits, 2, 64) uint8     packed codes (tmac.layout)
    tables   (N, G, 16) int8 or float32      G = 4 * U table groups per activation row
    g0, g1   (nblocks,) int64                each block's table groups [g0, g1)
    half     (N, nblocks) float32            int8 mode: table scale of the block's act group * 0.5
    xsum     (N, nblocks) float32            block sums of the activations
    wg       (nblocks,) int64                weight group of each block
    sc, off  (Mt, n_weight_groups, 64) float32  scales and offsets, 64 rows contiguous
    out      (N, Mt * 64) float32            output (rows past M are garbage-free zeros)
    tiles_per_task                           row tiles (64 rows) per parallel task

Parallel over row tiles only: every (row, block) reduction runs on one thread in one order,
so results do not depend on the thread count.
"""
from __future__ import annotations

import numpy as np

from tmac.kernels.jit import njit, prange

PLANE_WEIGHTS = np.array([0.5, 1.0, 2.0, 4.0], np.float32)   # 2^(i-1), exact in float32


@njit(cache=True, inline="always")
def _epilogue(y, lut, sc, off, tile, wg, xs):
    """y[r] = y[r] + sc * (lut[r] + off * xs) for the 64 rows of one tile (contract order)."""
    for r in range(64):
        y[r] = y[r] + sc[tile, wg, r] * (lut[r] + off[tile, wg, r] * xs)


@njit(cache=True, parallel=True)
def lut_int8_portable(data, tables, g0, g1, half, xsum, wg, sc, off, out, tiles_per_task):
    """int8 tables: P = sum_i 2^i sum_g qT[g, idx] exactly in int32, lut = float32(P) * half."""
    n_tiles, _, bits = data.shape[0], data.shape[1], data.shape[2]
    n_tok, n_blocks = tables.shape[0], g0.shape[0]
    n_tasks = -(-n_tiles // tiles_per_task)
    for task in prange(n_tasks):
        acc = np.zeros(64, np.int32)
        lut = np.zeros(64, np.float32)
        y = np.zeros(64, np.float32)
        for tile in range(task * tiles_per_task, min(n_tiles, (task + 1) * tiles_per_task)):
            for n in range(n_tok):
                y[:] = 0
                for b in range(n_blocks):
                    acc[:] = 0
                    for g in range(g0[b], g1[b]):
                        u, q = g >> 2, g & 3
                        for i in range(bits):
                            for s in range(2):
                                for r in range(16):
                                    byte = data[tile, u, i, s, 4 * r + q]
                                    acc[32 * s + r] += np.int32(tables[n, g, byte & 15]) << i
                                    acc[32 * s + 16 + r] += np.int32(tables[n, g, byte >> 4]) << i
                    for r in range(64):
                        lut[r] = np.float32(acc[r]) * half[n, b]
                    _epilogue(y, lut, sc, off, tile, wg[b], xsum[n, b])
                out[n, tile * 64:tile * 64 + 64] = y


@njit(cache=True, parallel=True)
def lut_f32_portable(data, tables, g0, g1, half, xsum, wg, sc, off, out, tiles_per_task):
    """float32 tables: F_i = sum_g T[g, idx_i] from 0.0 in increasing g, lut = sum_i F_i * 2^(i-1)
    left to right from 0.0. ``half`` is unused (same signature as the int8 kernel)."""
    n_tiles, _, bits = data.shape[0], data.shape[1], data.shape[2]
    n_tok, n_blocks = tables.shape[0], g0.shape[0]
    n_tasks = -(-n_tiles // tiles_per_task)
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
                        for g in range(g0[b], g1[b]):
                            u, q = g >> 2, g & 3
                            for s in range(2):
                                for r in range(16):
                                    byte = data[tile, u, i, s, 4 * r + q]
                                    plane[32 * s + r] += tables[n, g, byte & 15]
                                    plane[32 * s + 16 + r] += tables[n, g, byte >> 4]
                        for r in range(64):
                            lut[r] = lut[r] + plane[r] * PLANE_WEIGHTS[i]
                    _epilogue(y, lut, sc, off, tile, wg[b], xsum[n, b])
                out[n, tile * 64:tile * 64 + 64] = y
