"""The baseline everyone knows: dequantize the weights to float32, then multiply.

    w[m, k] = (float32(code) - zero) * scale                (``quantize.dequantize``)
    y[n, m] = sum_k w[m, k] * x[n, k]                       (float32, from 0.0, increasing k)

Its cost does not fall with the bit width: every weight becomes a float before it is used.
The sum runs left to right so that a kernel vectorized across rows reproduces it bit for bit.
"""

import numpy as np

from .lut_matmul import sequential_sum
from .quantize import dequantize


def dequant_matmul(codes, scales, zeros, x):
    """codes (M, K) uint8, scales/zeros (M, K // group_size) float32, x (N, K) float32 -> (N, M) float32."""
    w = dequantize(codes, scales, zeros)
    return sequential_sum(x[:, None, :] * w[None, :, :])
