"""Dequantize-then-multiply baseline in Numba (the method T-MAC replaces), exact per the contract:

    w[m, k] = (float32(code) - zero) * scale
    y[n, m] = sum_k w[m, k] * x[n, k]      float32, from 0.0, increasing k

The sum order is sequential in k, so the kernel vectorizes across rows instead: a 64-row tile
of weights is dequantized, transposed, into a (K_CHUNK, 64) float32 buffer, then each k adds
w[k, :] * x[n, k] to 64 row accumulators (4 zmm / 8 ymm registers). Plain Numba: LLVM
vectorizes the fixed-length inner loop for whatever CPU it compiles for.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

K_CHUNK = 512


@njit(cache=True, parallel=True)
def dequant_portable(codes, scales, zeros, x, out):
    """codes (M, K) uint8, scales/zeros (M, G) float32, x (N, K) float32 -> out (N, M) float32."""
    m_rows, k_cols = codes.shape
    group = k_cols // scales.shape[1]
    n_tok = x.shape[0]
    for tile in prange(-(-m_rows // 64)):
        m0 = tile * 64
        rows = min(64, m_rows - m0)
        w = np.zeros((K_CHUNK, 64), np.float32)
        acc = np.zeros((n_tok, 64), np.float32)
        for k0 in range(0, k_cols, K_CHUNK):
            kn = min(K_CHUNK, k_cols - k0)
            for r in range(rows):
                for k in range(kn):
                    wg = (k0 + k) // group
                    w[k, r] = (np.float32(codes[m0 + r, k0 + k]) - zeros[m0 + r, wg]) * scales[m0 + r, wg]
            for n in range(n_tok):
                for k in range(kn):
                    xk = x[n, k0 + k]
                    for r in range(64):
                        acc[n, r] += w[k, r] * xk
        for n in range(n_tok):
            for r in range(rows):
                out[n, m0 + r] = acc[n, r]


def run_dequant(codes, scales, zeros, x):
    """Validated entry: (N, M) float32."""
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty((x.shape[0], codes.shape[0]), np.float32)
    dequant_portable(codes, np.ascontiguousarray(scales, np.float32),
                     np.ascontiguousarray(zeros, np.float32), x, out)
    return out
