"""OCP FP4 E2M1: the element type of MXFP4 and NVFP4, with one float32 scale per group.

A 4-bit code holds a sign, a 2-bit exponent and a 1-bit mantissa (exponent bias 1, no
infinities, no NaN):

        code bit:    3   |  2   1   |  0
                   sign  | exponent | mantissa

        e = 0 (subnormal):  value = (-1)^s * m * 0.5            -> 0, 0.5
        e > 0 (normal):     value = (-1)^s * (1 + m/2) * 2^(e-1) -> 1, 1.5, 2, 3, 4, 6

    code  bits   value     code  bits   value
       0  0000    0.0         8  1000   -0.0
       1  0001    0.5         9  1001   -0.5
       2  0010    1.0        10  1010   -1.0
       3  0011    1.5        11  1011   -1.5
       4  0100    2.0        12  1100   -2.0
       5  0101    3.0        13  1101   -3.0
       6  0110    4.0        14  1110   -4.0
       7  0111    6.0        15  1111   -6.0

Rounding a float r to a code (``round_to_codes``) follows IEEE conversion: the sign bit is the
sign of r (so -0.0 and small negatives give code 8), the magnitude goes to the nearest of
0, 0.5, 1, 1.5, 2, 3, 4, 6, and a tie goes to the code with mantissa bit 0 (the even code):
0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4. Magnitudes above 6
saturate to 6 (the format has no infinity). This is what ml_dtypes' float4_e2m1fn does.

Group quantization (``quantize``), per group of G consecutive K elements, float32:
    absmax  scale = max|w| / 6, so the largest magnitude maps to +-6 (NVFP4's rule, with a
            float32 instead of an FP8 scale). An all-zero group gets scale 1.
    pow2    scale = 2^(floor(log2(max|w|)) - 2), a power of two as in MXFP4 (E8M0 scales,
            emax(E2M1) = 2); up to 8 * scale can occur and saturates to 6 * scale.
    codes = round_to_codes(w / scale)   (float32 division)

Dequantization: w = decode(code) * scale (float32, one rounding). E2M1 is not affine in its
code, so it cannot use the bit-plane LUT path; tmac multiplies it by dequantize-then-multiply
(``dequant_matmul``: float32 products summed from 0.0 in increasing k).

Shapes: w (M, K) float32; codes (M, K) uint8; scales (M, K // G) float32.
"""

import numpy as np

from .lut_matmul import sequential_sum
from .m0e4 import check_codes, check_group_params, check_group_size
from .quantize import group_view

SIGN_BIT = 8
MAGNITUDES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=np.float32)   # codes 0..7
MIDPOINTS = (MAGNITUDES[:-1] + MAGNITUDES[1:]) / 2                                 # 0.25 .. 5
MAX = np.float32(6.0)
SCALE_RULES = ("absmax", "pow2")


def code_value(code):
    """The value of one code from its fields (the formula, not the table)."""
    sign, exponent, mantissa = code >> 3 & 1, code >> 1 & 3, code & 1
    magnitude = mantissa * 0.5 if exponent == 0 else (1 + mantissa / 2) * 2.0 ** (exponent - 1)
    return -magnitude if sign else magnitude


VALUES = np.array([code_value(c) for c in range(16)], dtype=np.float32)   # decode table (-0.0 at 8)


def decode(codes):
    """codes (...) in 0..15 -> float32 values (...) by table lookup (code 8 is -0.0)."""
    return VALUES[check_codes(codes)]


def round_to_codes(r):
    """float32 r (...) -> codes (...) uint8: nearest value, ties to the even code, saturating at 6."""
    r = np.asarray(r, dtype=np.float32)
    if not np.isfinite(r).all():
        raise ValueError("values to round must be finite (found NaN or Inf)")
    magnitude = np.abs(r)
    below = np.searchsorted(MIDPOINTS, magnitude, side="left")    # midpoints < |r|
    above = np.searchsorted(MIDPOINTS, magnitude, side="right")   # midpoints <= |r|
    tie = below != above                                           # |r| is a midpoint
    index = np.where(tie, np.where(below % 2 == 0, below, above), below)
    return (index | np.where(np.signbit(r), SIGN_BIT, 0)).astype(np.uint8)


def scales_for(w_groups, rule="absmax"):
    """Per-group float32 scales (M, G) from w (M, G, W), by ``rule`` ("absmax" or "pow2")."""
    if rule not in SCALE_RULES:
        raise ValueError(f"rule must be one of {SCALE_RULES}, got {rule!r}")
    absmax = np.abs(w_groups).max(axis=-1).astype(np.float32)
    if rule == "absmax":
        scale = (absmax / MAX).astype(np.float32)
    else:
        _, exponent = np.frexp(absmax)                  # absmax = f * 2^exponent, f in [0.5, 1)
        scale = np.ldexp(np.float32(1), exponent - 1 - 2).astype(np.float32)
    return np.where(absmax == 0, np.float32(1), scale).astype(np.float32)


def quantize(w, group_size, rule="absmax"):
    """E2M1 with a float32 scale per group. w (M, K) float32 -> codes (M, K) uint8, scales (M, G)."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (M, K), got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("w must be finite (found NaN or Inf)")
    group_size = check_group_size(w.shape[1], group_size)
    g = group_view(w, group_size)
    scales = scales_for(g, rule)
    codes = round_to_codes(g / scales[..., None])
    return codes.reshape(w.shape), scales


def dequantize(codes, scales):
    """w = decode(code) * scale, float32 (one rounding). codes (M, K), scales (M, G) -> (M, K)."""
    codes = check_codes(codes)
    scales = check_group_params(codes, "scales", scales)
    m, k = codes.shape
    v = group_view(decode(codes), k // scales.shape[1])
    return (v * scales[..., None]).astype(np.float32).reshape(m, k)


def dequant_matmul(codes, scales, x):
    """y (N, M) = sum_k w[m, k] * x[n, k]: products rounded, summed from 0.0 in increasing k."""
    w = dequantize(codes, scales)
    return sequential_sum(np.asarray(x, np.float32)[:, None, :] * w[None, :, :])
