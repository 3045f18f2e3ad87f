"""M0E4: Transformer-Lite's 4-bit weight format, dequantized by two bit operations.

Transformer-Lite (Li et al., arXiv 2403.20041) stores 4-bit weights in a format it calls M0E4
(secondary sources spell it E0M4) whose conversion to fp16 takes two bit operations, so no
int-to-float conversion is needed. No public code exists; tmac adopts this reading:

A code q in [0, 16) is placed in the top four mantissa bits of an fp16 whose exponent is fixed
at the bias (the exponent of 1.0):

        fp16 bit:  15 | 14 13 12 11 10 |  9  8  7  6 | 5  4  3  2  1  0
                  sign|   exponent     |    mantissa (10 bits)
         0x3C00:   0  |  0  1  1  1  1 |  0  0  0  0 | 0  0  0  0  0  0      = 1.0
       q << 6:     0  |  0  0  0  0  0 | q3 q2 q1 q0 | 0  0  0  0  0  0
        bits  =  0x3C00 | (q << 6)                                           = 1 + q/16

so the two operations are a shift and an OR, and the value is exactly 1 + q/16 in [1, 2).
Widened to float32 (8 exponent bits, 23 mantissa bits) the same number has the bits
0x3F800000 | (q << 19): the fp16 mantissa moves up by 13 places and the biased exponent
15 becomes 127. Either bit pattern is a valid "decode"; kernels use the float32 one.

A group of consecutive weights along K shares a float32 scale a > 0 and offset b:

        w = a * (1 + q/16) + b          evaluated as  t = v * a  (float32, rounded)
                                                      w = t + b  (float32, rounded)

with v = 1 + q/16 from the bit trick. Two roundings, no fused multiply-add: this order is the
contract the Numba kernel reproduces bit for bit.

The format is affine in q, w = (a/16) * q + (a + b), so it is a uniform 4-bit quantizer whose
offset is a float (not a rounded integer zero point, as in GPTQ). ``affine_params`` turns (a, b)
into the (scales, zeros) of the uniform schemes so that M0E4 weights run through the LUT path.

Shapes and dtypes
-----------------
    w       (M, K)      float32    the weights
    codes   (M, K)      uint8      q in [0, 16)
    a, b    (M, K // G) float32    per group of G consecutive K elements (a > 0, finite)

Quantizers (per group)
----------------------
minmax  The 16 levels span the group's range exactly: level 0 = min, level 15 = max,
        step = (max - min) / 15, a = 16 * step, b = min - a. A constant group c gets a = |c|
        (1 if c = 0) and b = c - a, which reproduces c exactly.
lsq     Error-minimizing (Lloyd / alternating least squares): start from minmax, then
        ``LSQ_ITERATIONS`` times refit (step, level 0) by least squares of w on the current codes
        and re-round the codes to the new levels. Each group keeps the fit with the least squared
        error among all iterates (minmax included), so lsq is never worse than minmax.
Codes are the nearest level: q = clip(rint((w - level0) / step), 0, 15), rint half to even.
Fitting is done in float64; a, b are float32 with a = 16 * step exactly.
"""

import numpy as np

from .lut_matmul import sequential_sum
from .quantize import group_view, least_squares_line

FP16_ONE = np.uint16(0x3C00)          # sign 0, exponent 01111 (bias: 2^0), mantissa 0 -> 1.0
FP16_SHIFT = 6                        # q goes to mantissa bits 9..6
FP32_ONE = np.uint32(0x3F800000)      # the same 1.0 in float32
FP32_SHIFT = 19                       # 6 + 13: fp16 mantissa bits sit 13 places lower
FITS = ("minmax", "lsq")
LSQ_ITERATIONS = 8


# ---- checks (the reference refuses what it cannot define) ----------------------------------

def check_codes(codes, name="codes"):
    """codes as an integer array with every value in [0, 16); TypeError/ValueError otherwise."""
    codes = np.asarray(codes)
    if codes.dtype.kind not in "ui":
        raise TypeError(f"{name} must be an integer array of 4-bit codes, got dtype {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() > 15):
        raise ValueError(f"{name} must lie in 0..15 (4-bit codes), found {codes.min()}..{codes.max()}")
    return codes.astype(np.uint8)


def check_group_params(codes, name, params):
    """A float32 (M, G) parameter array whose G divides K and whose values are finite."""
    params = np.asarray(params)
    if params.dtype.kind != "f":
        raise TypeError(f"{name} must be a float array, got dtype {params.dtype}")
    params = params.astype(np.float32)
    m, k = codes.shape
    if params.ndim != 2 or params.shape[0] != m or params.shape[1] == 0 or k % params.shape[1]:
        raise ValueError(f"{name} must have shape (M, G) = ({m}, G) with G dividing K={k} "
                         f"(one column per group), got {params.shape}")
    if not np.isfinite(params).all():
        raise ValueError(f"{name} must be finite (found NaN or Inf)")
    return params


def check_group_size(k, group_size):
    """group_size must be a positive int dividing K."""
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
        raise TypeError(f"group_size must be an int, got {type(group_size).__name__}")
    if group_size <= 0 or k % group_size:
        raise ValueError(f"group_size {group_size} must be a positive divisor of K={k}")
    return int(group_size)


# ---- encode / decode ---------------------------------------------------------------------------

def encode_fp16_bits(codes):
    """codes (...) in 0..15 -> fp16 bit patterns (...) uint16: 0x3C00 | (q << 6)."""
    q = check_codes(codes).astype(np.uint16)
    return (FP16_ONE | (q << FP16_SHIFT)).astype(np.uint16)


def encode_fp32_bits(codes):
    """codes (...) in 0..15 -> float32 bit patterns (...) uint32: 0x3F800000 | (q << 19)."""
    q = check_codes(codes).astype(np.uint32)
    return (FP32_ONE | (q << FP32_SHIFT)).astype(np.uint32)


def decode(codes):
    """The bit trick: codes -> v = 1 + q/16 as float32, through the fp16 bit pattern.

    bits (uint16) -> reinterpret as float16 -> widen to float32 (exact). No int-to-float.
    """
    return encode_fp16_bits(codes).view(np.float16).astype(np.float32)


# ---- dequantize / quantize ---------------------------------------------------------------------

def dequantize(codes, a, b):
    """w = (v * a) + b per group, float32, two roundings. codes (M, K), a/b (M, G) -> (M, K)."""
    codes = check_codes(codes)
    a = check_group_params(codes, "a", a)
    b = check_group_params(codes, "b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    m, k = codes.shape
    v = group_view(decode(codes), k // a.shape[1])
    t = (v * a[..., None]).astype(np.float32)
    return (t + b[..., None]).astype(np.float32).reshape(m, k)


def _nearest_codes(g, step, level0):
    """q = clip(rint((w - level0) / step), 0, 15); g (M, G, W), step/level0 (M, G) float64."""
    q = np.rint((g - level0[..., None]) / step[..., None])
    return np.clip(q, 0, 15).astype(np.uint8)


def _params(step, level0):
    """float64 (step, level0) -> float32 (a, b) with a = 16 * float32(step) exactly."""
    a = (np.float32(16) * step.astype(np.float32)).astype(np.float32)
    b = (level0 - a.astype(np.float64)).astype(np.float32)
    return a, b


def _minmax_fit(g):
    """float64 (step, level0) spanning [min, max] of each group; constant groups handled."""
    lo, hi = g.min(axis=-1), g.max(axis=-1)
    step = (hi - lo) / 15
    constant = step == 0
    # constant group c: a = |c| (1 if c == 0), b = c - a, so level 0 is exactly c
    step = np.where(constant, np.where(lo == 0, 1.0, np.abs(lo)) / 16, step)
    return step, lo


def _squared_error(g32, codes, a, b):
    """Per group sum of (dequantize - w)^2 in float64, with the exact float32 dequantization."""
    m, n_groups, width = g32.shape
    w = dequantize(codes.reshape(m, -1), a, b).reshape(g32.shape)
    return ((w.astype(np.float64) - g32) ** 2).sum(axis=-1)


def quantize(w, group_size, fit="lsq"):
    """M0E4 quantization. w (M, K) float32 -> codes (M, K) uint8, a (M, G) float32, b (M, G) float32.

    ``fit`` is "minmax" or "lsq" (see the module docstring); G = K // group_size.
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (M, K), got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("w must be finite (found NaN or Inf)")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    group_size = check_group_size(w.shape[1], group_size)
    g32 = group_view(w, group_size)
    g = g32.astype(np.float64)

    step, level0 = _minmax_fit(g)
    a, b = _params(step, level0)
    codes = _nearest_codes(g, a.astype(np.float64) / 16, a.astype(np.float64) + b)
    if fit == "lsq":
        best_err = _squared_error(g32, codes, a, b)
        for _ in range(LSQ_ITERATIONS):
            new_step, new_level0 = least_squares_line(g, codes, step, level0)
            new_a, new_b = _params(new_step, new_level0)
            new_codes = _nearest_codes(g, new_a.astype(np.float64) / 16, new_a.astype(np.float64) + new_b)
            err = _squared_error(g32, new_codes, new_a, new_b)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            a, b = np.where(better, new_a, a), np.where(better, new_b, b)
            codes = np.where(better[..., None], new_codes, codes)
            step, level0 = new_step, new_level0
    return codes.reshape(w.shape), a.astype(np.float32), b.astype(np.float32)


# ---- the LUT path: M0E4 as a uniform quantizer with a float zero -------------------------------

def affine_params(a, b):
    """(a, b) -> (scales, zeros), float32 (M, G), for the uniform LUT path w = (q - zero) * scale.

        scale = a / 16                      exact (a power-of-two division; a is a normal float)
        c     = a + b                       float32, rounded: the weight at q = 0
        zero  = -(c / scale)                float32 division, rounded

    Then (q - zero) * scale = scale * q + c up to those roundings; M0E4 weights run through
    ``lut_matmul`` unchanged, and every kernel equals the reference LUT path bit for bit with
    these (scales, zeros). It is *not* bit-identical to ``dequantize`` (the bit trick):
    the two evaluate the same real number with different roundings.
    """
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite (found NaN or Inf)")
    if not (a > 0).all():
        raise ValueError("a must be > 0 for the LUT path (scale = a / 16 divides the offset)")
    scales = (a / np.float32(16)).astype(np.float32)
    c = (a + b).astype(np.float32)
    zeros = (-(c / scales)).astype(np.float32)
    return scales, zeros


def dequant_matmul(codes, a, b, x):
    """Dequantize by the bit trick, then multiply: y (N, M) = sum_k w[m, k] * x[n, k].

    codes (M, K) uint8, a/b (M, G) float32, x (N, K) float32. The sum is float32 from 0.0 in
    increasing k (each product rounded, then added), as in ``dequant_matmul.dequant_matmul``.
    """
    w = dequantize(codes, a, b)
    return sequential_sum(np.asarray(x, np.float32)[:, None, :] * w[None, :, :])
