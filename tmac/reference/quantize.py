"""Uniform b-bit weight quantization, per group of consecutive K elements, and its inverse.

Every scheme here produces the same three arrays, so that one lookup kernel serves them all:

    codes  (M, K)               uint8    in [0, 2^bits)
    scales (M, K // group_size) float32
    zeros  (M, K // group_size) float32  (integer-valued for these schemes)

and a weight is reconstructed as ``w = (code - zero) * scale`` (see ``dequantize``).

Schemes
-------
asym     GPTQ/AWQ convention. Per group, a range [lo, hi] containing 0 is cut into 2^b - 1 steps:
         scale = (hi - lo) / (2^b - 1), zero = rint(-lo / scale), code = clip(rint(w / scale) + zero).
         The range is [min(w, 0), max(w, 0)] shrunk by the factor p from ``SHRINK_GRID`` that gives
         the least squared error (GPTQ's "mse" range search; p = 1 is the plain min/max fit, and
         ties keep the larger p). The search matters most at 1 bit, where the min/max fit sends
         most weights to the zero level.
sym      llama.cpp Q4_0 convention, zero fixed at 2^(b-1). The element of largest magnitude m
         (with its sign) maps to code 0: scale = m / -2^(b-1), code = clip(rint(w / scale) + zero).
ternary  BitNet b1.58: one scale per tensor, s = max(mean |W|, 1e-5), t = clip(rint(W / s), -1, 1),
         carried as 2-bit codes t + 2 in {1, 2, 3} with zero 2; scales has one column (whole row).

All arithmetic is float32; ``rint`` rounds half to even.
"""

import numpy as np

SCHEMES = ("asym", "sym", "ternary")
TERNARY_MIN_SCALE = np.float32(1e-5)
SHRINK_GRID = np.linspace(1.0, 0.2, 21, dtype=np.float32)     # range factors tried by "asym"


def group_view(w, group_size):
    """(M, K) -> (M, K // group_size, group_size): consecutive K elements form a group."""
    m, k = w.shape
    return w.reshape(m, k // group_size, group_size)


def least_squares_line(g, codes, step, level0):
    """The (step, level0) minimising sum (step * code + level0 - w)^2 per group (float64):
    step = cov(code, w) / var(code), level0 = mean(w) - step * mean(code). Groups whose codes
    are all equal, or whose fitted step is not positive, keep the given step and level0.
    g (M, G, W) float64, codes (M, G, W), step/level0 (M, G) float64."""
    q = codes.astype(np.float64)
    q_mean, w_mean = q.mean(axis=-1), g.mean(axis=-1)
    var = ((q - q_mean[..., None]) ** 2).sum(axis=-1)
    cov = ((q - q_mean[..., None]) * (g - w_mean[..., None])).sum(axis=-1)
    usable = var > 0
    new_step = np.where(usable, cov / np.where(usable, var, 1), step)
    usable &= new_step > 0
    new_step = np.where(usable, new_step, step)
    return new_step, np.where(usable, w_mean - new_step * q_mean, level0)


def _divide_or_zero(w, scale):
    """w / scale, with 0 where scale == 0 (an all-zero group maps to its zero point)."""
    safe = np.where(scale == 0, np.float32(1), scale)
    return np.where(scale == 0, np.float32(0), w / safe).astype(np.float32)


def _codes_from(w_groups, scale, zero, bits):
    """code = clip(rint(w / scale) + zero, 0, 2^bits - 1) as uint8, shaped (M, K)."""
    q = np.rint(_divide_or_zero(w_groups, scale[..., None])) + zero[..., None]
    q = np.clip(q, 0, 2**bits - 1)
    return q.reshape(w_groups.shape[0], -1).astype(np.uint8)


def _asym_params(lo, hi, bits):
    """scale and zero for the range [lo, hi] (lo <= 0 <= hi); an empty range gets scale 1."""
    steps = np.float32(2**bits - 1)
    scale = ((hi - lo) / steps).astype(np.float32)
    scale = np.where(scale == 0, np.float32(1), scale)
    zero = np.clip(np.rint(-lo / scale), 0, steps).astype(np.float32)
    return scale, zero


def _group_squared_error(g, codes, scale, zero):
    """sum over each group of (dequantized - w)^2, (M, n_groups); float64 so that weights as
    large as 1e30 do not overflow the comparison."""
    restored = (codes.reshape(g.shape).astype(np.float32) - zero[..., None]) * scale[..., None]
    return ((restored.astype(np.float64) - g) ** 2).sum(axis=-1)


def quantize_asym(w, bits, group_size):
    """Asymmetric (GPTQ/AWQ) quantization with range search. w (M, K) float32 -> (codes, scales, zeros)."""
    g = group_view(w, group_size)
    lo = np.minimum(g.min(axis=-1), np.float32(0))
    hi = np.maximum(g.max(axis=-1), np.float32(0))
    best = None
    for p in SHRINK_GRID:
        scale, zero = _asym_params(lo * p, hi * p, bits)
        codes = _codes_from(g, scale, zero, bits)
        error = _group_squared_error(g, codes, scale, zero)
        if best is None:
            best = [error, codes.reshape(g.shape), scale, zero]
            continue
        better = error < best[0]
        best[0] = np.where(better, error, best[0])
        best[1] = np.where(better[..., None], codes.reshape(g.shape), best[1])
        best[2] = np.where(better, scale, best[2])
        best[3] = np.where(better, zero, best[3])
    _, codes, scale, zero = best
    return codes.reshape(w.shape), scale, zero


def quantize_sym(w, bits, group_size):
    """Symmetric quantization with zero 2^(bits-1). w (M, K) float32 -> (codes, scales, zeros)."""
    g = group_view(w, group_size)
    largest = np.take_along_axis(g, np.abs(g).argmax(axis=-1)[..., None], axis=-1)[..., 0]
    half = np.float32(2 ** (bits - 1))
    scale = (largest / -half).astype(np.float32)
    zero = np.full(scale.shape, half, dtype=np.float32)
    return _codes_from(g, scale, zero, bits), scale, zero


def quantize_ternary(w):
    """BitNet b1.58 absmean ternary as 2-bit codes {1, 2, 3}. w (M, K) -> (codes, scales (M, 1), zeros)."""
    m = w.shape[0]
    s = np.maximum(np.abs(w).mean(dtype=np.float32), TERNARY_MIN_SCALE)
    t = np.clip(np.rint(w / s), -1, 1)
    codes = (t + 2).astype(np.uint8)
    scales = np.full((m, 1), s, dtype=np.float32)
    zeros = np.full((m, 1), 2, dtype=np.float32)
    return codes, scales, zeros


def quantize(w, bits, group_size, scheme):
    """Quantize w (M, K) float32 by ``scheme``; ternary ignores bits/group_size (2 bits, whole row)."""
    if scheme == "asym":
        return quantize_asym(w, bits, group_size)
    if scheme == "sym":
        return quantize_sym(w, bits, group_size)
    if scheme == "ternary":
        return quantize_ternary(w)
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def dequantize(codes, scales, zeros):
    """w[m, k] = (float32(code) - zero) * scale, per group. Returns (M, K) float32."""
    m, k = codes.shape
    group_size = k // scales.shape[1]
    g = group_view(codes.astype(np.float32), group_size)
    w = (g - zeros[..., None]) * scales[..., None]
    return w.reshape(m, k).astype(np.float32)
