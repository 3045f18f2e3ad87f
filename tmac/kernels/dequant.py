"""Dequantize-then-multiply baseline in Numba (the method T-MAC replaces), exact per the contract:

    w[m, k] = (float32(code) - zero) * scale
    y[n, m] = sum_k w[m, k] * x[n, k]      float32, from 0.0, increasing k

The sum order is sequential in k, so the kernel vectorizes across rows instead: a 64-row tile
of weights is dequantized, transposed, into a (K_CHUNK, 64) float32 buffer, then each k adds
w[k, :] * x[n, k] to 64 row accumulators (4 zmm / 8 ymm registers). Plain Numba: LLVM
vectorizes the fixed-length inner loop for whatever CPU it compiles for. The transposing
dequantization (strided code reads) dominates; a sequential-k baseline cannot use the per-row
dot products that make llama.cpp's dequant kernels fast, so this baseline is slow by nature.
"""
from __future__ import annotations

import numpy as np

from tmac.kernels.epilogue import weight_groups, weights
from tmac.kernels.jit import njit, prange
from tmac.kernels.simd.generic import (add_f32, cvt_i32_f32, load512, mul_f32, set1_f32_512,
                                       set1_i32_512, sll_i32, srl_i32, store512, vand, vor, zero512)

K_CHUNK = 128


@njit(cache=True, parallel=True)
def dequant_portable(codes, scales, zeros, x, out):
    """codes (M, K) uint8, scales/zeros (M, G) float32, x (N, K) float32 -> out (N, M) float32.

    Per 64-row tile: scales and zeros transposed to (G, 64); then for each k the 64 weights
    w[k, :] are dequantized (strided reads of the codes, contiguous writes) and added into 64
    row accumulators per token, k in increasing order (the contract's sequential sum).
    """
    m_rows, k_cols = codes.shape
    n_groups = scales.shape[1]
    group = k_cols // n_groups
    n_tok = x.shape[0]
    for tile in prange(-(-m_rows // 64)):
        m0 = tile * 64
        rows = min(64, m_rows - m0)
        st = np.zeros((n_groups, 64), np.float32)
        zt = np.zeros((n_groups, 64), np.float32)
        for r in range(rows):
            for g in range(n_groups):
                st[g, r] = scales[m0 + r, g]
                zt[g, r] = zeros[m0 + r, g]
        w = np.zeros((K_CHUNK, 64), np.float32)
        acc = np.zeros((n_tok, 64), np.float32)
        for k0 in range(0, k_cols, K_CHUNK):
            kn = min(K_CHUNK, k_cols - k0)
            for k in range(kn):
                wg = (k0 + k) // group
                for r in range(rows):
                    w[k, r] = (np.float32(codes[m0 + r, k0 + k]) - zt[wg, r]) * st[wg, r]
            for n in range(n_tok):
                a = acc[n]
                for k in range(kn):
                    xk = x[n, k0 + k]
                    for r in range(64):
                        a[r] += w[k, r] * xk
        for n in range(n_tok):
            for r in range(rows):
                out[n, m0 + r] = acc[n, r]


@njit(cache=True, inline="always")
def _codes16(data, at, bits, shift, one):
    """Codes of 16 rows at one column: bit i from plane i's int32 lane >> shift (lane = row)."""
    code = vand(srl_i32(load512(data, at), shift), one)
    for i in range(1, bits):
        code = vor(code, sll_i32(vand(srl_i32(load512(data, at + 128 * i), shift), one), i))
    return code


@njit(cache=True, parallel=True)
def dequant_packed(data, sc, zt, x, out, group):
    """The same baseline on the packed layout (tmac.layout), vectorized 16 rows per register.

    data (Mt, U, bits, 2, 64) uint8; sc, zt (Mt, G, 64) the group parameters in either form
    (tmac.kernels.epilogue.weights); x (N, K) float32; out (N, Mt*64) float32; group = weight
    group width (Kp for a whole row).
    Column c = 16u + 4q + t of row 32s + 16h + r is bit t of nibble h of byte 4r + q, i.e.
    bit 8q + 4h + t of int32 lane r: extracting it for every plane gives 16 rows' codes.
    Columns past K are skipped, so every row's sum runs over k = 0..K-1 in order.
    """
    n_tiles, n_units, bits = data.shape[0], data.shape[1], data.shape[2]
    n_tok, n_groups, m_pad = x.shape[0], weight_groups(sc), out.shape[1]
    k_cols = x.shape[1]
    for tile in prange(n_tiles):
        one = set1_i32_512(1)
        for n in range(n_tok):
            y0 = zero512(); y1 = zero512(); y2 = zero512(); y3 = zero512()
            for u in range(n_units):
                for c in range(16):
                    col = 16 * u + c
                    if col >= k_cols:
                        break
                    wg = min(col // group, n_groups - 1)
                    xv = set1_f32_512(x[n, col])
                    base = (tile * n_groups + wg) * 64
                    at = (tile * n_units + u) * bits * 128
                    shift = 8 * (c >> 2) + (c & 3)
                    w = weights(cvt_i32_f32(_codes16(data, at, bits, shift, one)), sc, zt, base)
                    y0 = add_f32(y0, mul_f32(w, xv))
                    w = weights(cvt_i32_f32(_codes16(data, at, bits, shift + 4, one)), sc, zt, base + 16)
                    y1 = add_f32(y1, mul_f32(w, xv))
                    w = weights(cvt_i32_f32(_codes16(data, at + 64, bits, shift, one)), sc, zt, base + 32)
                    y2 = add_f32(y2, mul_f32(w, xv))
                    w = weights(cvt_i32_f32(_codes16(data, at + 64, bits, shift + 4, one)), sc, zt,
                                base + 48)
                    y3 = add_f32(y3, mul_f32(w, xv))
            o = n * m_pad + tile * 64
            store512(out, o, y0); store512(out, o + 16, y1)
            store512(out, o + 32, y2); store512(out, o + 48, y3)


def run_dequant_packed(packed, scales, zeros, x):
    """Dequant baseline from a PackedCodes (its group parameters if it carries them, else
    ``scales``/``zeros`` in the zero-point form, transposed now)."""
    from tmac.layout import pack_params

    x = np.ascontiguousarray(x, np.float32)
    k = packed.k
    sc, zt = (packed.scales_t, packed.zeros_t) if packed.scales_t is not None \
        else pack_params(scales, zeros)
    group = k // (sc[1] if isinstance(sc, tuple) else sc).shape[1]
    group = -(-k // 4) * 4 if group >= k else group
    out = np.empty((x.shape[0], packed.m_padded), np.float32)
    dequant_packed(packed.data, sc, zt, x, out, group)
    return out[:, :packed.m] if x.shape[0] == 1 else np.ascontiguousarray(out[:, :packed.m])


def run_dequant(codes, scales, zeros, x):
    """Validated entry: (N, M) float32."""
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty((x.shape[0], codes.shape[0]), np.float32)
    dequant_portable(codes, np.ascontiguousarray(scales, np.float32),
                     np.ascontiguousarray(zeros, np.float32), x, out)
    return out
