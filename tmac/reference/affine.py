"""Affine groups: w = scale * code + offset, with a float offset per group (llama.cpp's Q4_1/Q5_1
form), codes of 1 to 8 bits, scale and offset stored as float16.

Why a float offset: an integer zero point (``quantize.quantize_asym``) forces the group's
lowest level onto a whole number of steps from 0; a llama.cpp Q4_1 block's minimum is not, so
requantizing such a block with an integer zero shifts all of it. Here the lowest level is the
offset itself.

Shapes and dtypes
-----------------
    w        (M, K)      float32    the weights
    codes    (M, K)      uint8      in [0, 2^bits)
    scales   (M, K // G) float32    values of float16 numbers (exactly representable)
    offsets  (M, K // G) float32    values of float16 numbers

Dequantization (the contract; exactly gguf's ``d * q + m`` for Q4_1 and Q5_1):

    t = float32(code) * scale          float32, rounded
    w = t + offset                     float32, rounded          (no fused multiply-add)

The LUT product (``lut_matmul``). Tables, lookups, the shift-accumulated ``lut`` and the block
sums ``xsum`` are those of ``lut_matmul`` (the same as for every format); only the epilogue
differs. With c = float32((2^bits - 1) / 2), ``lut + c * xsum`` is the block's sum of
code * x (the bit planes read as signs are centred on c), so per row and block b of weight
group wg:

    code_dot = lut + c * xsum[b]                          float32: c * xsum, then the add
    block    = scale[wg] * code_dot + offset[wg] * xsum[b]   two products, then their sum
    y        = 0.0, then y = y + block for b = 0, 1, ... in order

This is scale * sum(code * x) + offset * sum(x), the same real number as the dot product of
``dequantize`` with x, rounded differently: the LUT product is *not* bit-identical to
dequantize-then-multiply (no format's is), and the kernels equal this order bit for bit.

Fit (``quantize``), per group of G consecutive K elements, in float64, L = 2^bits levels:

    minmax   level 0 at the group's minimum, level L - 1 at its maximum:
             offset = min, scale = (max - min) / (L - 1)
    lsq      from minmax, ``LSQ_ITERATIONS`` times: least squares of w on the current codes
             gives (scale, offset), codes re-rounded to the new levels; each group keeps the
             parameters of least squared error (minmax included)

    hqq      half-quadratic optimisation (Badri & Shaji 2023, "Half-Quadratic Quantization of
             Large ML Models"; mobiusml/hqq) of the lp error E = sum |w - dequantize|^p with
             p = HQQ_P = 0.7 < 1, no data: an lp error forgives a few large misses (outliers)
             to fit the bulk of the group closely. HQQ splits the residual into an outlier
             part e and solves two easy problems in turn, with a penalty weight beta starting
             at HQQ_BETA = 10 and growing by HQQ_KAPPA = 1.01 per iteration. From minmax,
             HQQ_ITERATIONS = 20 times (r = w - dequantize, the current residual; s = scale):

                 e = sign(r) * max(|r| - t, 0)    t = |r|^(p-1) * s^(2-p) / beta, the lp
                                                  shrinkage of r, measured in steps (r / s)
                 (scale, offset) = least squares of w - e on the codes
                 codes re-rounded to the new levels; beta = kappa * beta

             w - e = dequantize + clip(r, -t, t): each weight pulls the fit by its residual,
             capped at t, so outliers pull less. Each group keeps the parameters of least lp
             error (minmax included): E never exceeds minmax's, and the total E of the kept
             parameters (``hqq``'s history) never increases. |r|^(p-1) is taken in float32.

             Two departures from mobiusml/hqq, both measured (SmolLM2-135M perplexity,
             docs/model.md): HQQ updates only the offset (its zero point), the scale fixed at
             minmax's, and shrinks r in weight units, where with beta = 10 the threshold
             exceeds any residual below 10^(-1/(2-p)) = 0.17: on LLM weights, whose residuals
             are far smaller, e = 0 and the update is the plain least-squares offset. Fitting
             the scale too and measuring r in steps gave the best perplexity of the four
             combinations (3-bit g32: 112 against 135 for HQQ's own form; 4-bit g64: 25.9
             against 26.8). HQQ stops when the whole tensor's mean |r| rises; here each group
             keeps its best iterate. More iterations lower E further but not the perplexity
             (50: 139 at 3-bit g32). An lp error is not the squared error: hqq beats lsq at
             4-bit g64 (25.9 against 26.5) and loses at 3 bits (112 against 88 at g32), so lsq
             stays the default.

Parameters are rounded to float16 before codes are chosen, and the error of every candidate is
measured with the exact float32 dequantization above; codes are the nearest level,
code = clip(rint((w - offset) / scale), 0, L - 1) (scale 0: code 0), rint half to even.
A Q4_1 or Q5_1 tensor dequantized to float32 and requantized at its block size (32) gets its
own codes, d and m back, so ``dequantize`` reproduces gguf's values bit for bit.
"""

import numpy as np

from .lut_matmul import lut_and_sums, sequential_sum
from .quantize import group_view, least_squares_line

WIDTHS = tuple(range(1, 9))
FITS = ("minmax", "lsq", "hqq")
LSQ_ITERATIONS = 6
HQQ_P = 0.7             # the lp error's exponent
HQQ_BETA = 10.0         # the penalty weight at the first iteration
HQQ_KAPPA = 1.01        # beta's growth per iteration
HQQ_ITERATIONS = 20
HQQ_CHUNK = 65536       # weights fitted at a time, whole rows (memory bound; a group's result
                        # does not depend on it)
FLOAT16_MAX = 65504.0


def dequantize(codes, scales, offsets):
    """w = float32(code) * scale + offset per group, two roundings. -> (M, K) float32."""
    m, k = codes.shape
    g = group_view(codes.astype(np.float32), k // scales.shape[1])
    t = (g * scales[..., None]).astype(np.float32)
    return (t + offsets[..., None]).astype(np.float32).reshape(m, k)


def _to_float16(values, what):
    """float64 -> the float32 values of the nearest float16 numbers; ValueError on overflow."""
    if np.abs(values).max(initial=0) > FLOAT16_MAX:
        raise ValueError(f"w is too large for float16 group parameters: a group's {what} "
                         f"exceeds {FLOAT16_MAX:g}")
    return values.astype(np.float16).astype(np.float32)


def _nearest_codes(g, scale, offset, levels):
    """code = clip(rint((w - offset) / scale), 0, levels - 1); g (M, G, W) float64."""
    safe = np.where(scale == 0, 1.0, scale)[..., None]
    q = np.where(scale[..., None] == 0, 0.0, np.rint((g - offset[..., None]) / safe))
    return np.clip(q, 0, levels - 1).astype(np.uint8)


def _restore(g, step, level0, levels):
    """Round (step, level0) to float16, choose the nearest codes, dequantize in float32:
    (codes, scale, offset, restored (M, G, W) float32)."""
    scale = _to_float16(step, "scale")
    offset = _to_float16(level0, "offset")
    codes = _nearest_codes(g, scale.astype(np.float64), offset.astype(np.float64), levels)
    t = (codes.astype(np.float32) * scale[..., None]).astype(np.float32)
    return codes, scale, offset, (t + offset[..., None]).astype(np.float32)


def _candidate(g, g32, step, level0, levels):
    """Round (step, level0) to float16, choose the nearest codes, measure the squared error of
    the float32 dequantization: (codes, scale, offset, error) per group."""
    codes, scale, offset, restored = _restore(g, step, level0, levels)
    error = ((restored.astype(np.float64) - g32) ** 2).sum(axis=-1)
    return codes, scale, offset, error


def _keep_better(best, candidate):
    """Per group, the (codes, scale, offset, error) of smaller error (``best`` on ties)."""
    better = candidate[3] < best[3]
    return [np.where(better[..., None], candidate[0], best[0]),
            *(np.where(better, c, b) for c, b in zip(candidate[1:], best[1:]))]


def _check(bits, fit):
    if bits not in WIDTHS:
        raise ValueError(f"bits must be one of {WIDTHS}, got {bits!r}")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")


def quantize(w, bits, group_size, fit="lsq"):
    """w (M, K) float32 -> (codes (M, K) uint8, scales, offsets (M, K // group_size) float32)."""
    _check(bits, fit)
    if fit == "hqq":
        codes, scales, offsets, _ = hqq(w, bits, group_size)
        return codes, scales, offsets
    g32 = group_view(np.asarray(w, np.float32), group_size)
    g = g32.astype(np.float64)
    levels = 2**bits
    lo, hi = g.min(axis=-1), g.max(axis=-1)
    step, level0 = (hi - lo) / (levels - 1), lo
    best = list(_candidate(g, g32, step, level0, levels))
    if fit == "lsq":
        codes = best[0]
        for _ in range(LSQ_ITERATIONS):
            step, level0 = least_squares_line(g, codes, step, level0)
            candidate = _candidate(g, g32, step, level0, levels)
            codes = candidate[0]
            best = _keep_better(best, candidate)
    codes, scales, offsets, _ = best
    return codes.reshape(w.shape), scales, offsets


def hqq(w, bits, group_size, iterations=HQQ_ITERATIONS):
    """The "hqq" fit (module docstring), HQQ_CHUNK weights at a time. w (M, K) float32 ->
    (codes (M, K) uint8, scales, offsets (M, K // group_size) float32, history): history
    (iterations + 1,) float64 is the total lp error sum |w - dequantize|^p of the parameters
    kept after each iteration (0: minmax), non-increasing."""
    _check(bits, "hqq")
    w = np.asarray(w, np.float32)
    rows = max(1, HQQ_CHUNK // w.shape[1])
    parts = [_hqq_rows(w[i:i + rows], bits, group_size, iterations)
             for i in range(0, w.shape[0], rows)]
    codes, scales, offsets = (np.concatenate([p[j] for p in parts]) for j in range(3))
    return codes.reshape(w.shape), scales, offsets, np.sum([p[3] for p in parts], axis=0)


def _hqq_rows(w, bits, group_size, iterations):
    g = group_view(w, group_size).astype(np.float64)
    levels, p, beta = 2**bits, HQQ_P, HQQ_BETA
    lo, hi = g.min(axis=-1), g.max(axis=-1)
    step, level0 = (hi - lo) / (levels - 1), lo                     # minmax
    history = []
    for i in range(iterations + 1):
        codes, scale, offset, restored = _restore(g, step, level0, levels)
        r = g - restored
        size = np.abs(r).astype(np.float32)
        weight = np.power(size, np.float32(p - 1), out=np.zeros_like(size), where=size > 0)
        candidate = [codes, scale, offset, (size * weight).sum(axis=-1, dtype=np.float64)]
        best = candidate if i == 0 else _keep_better(best, candidate)
        history.append(best[3].sum())
        if i == iterations:
            break
        s = scale.astype(np.float64)
        t = weight * (np.where(s > 0, s, 1.0) ** (2 - p) / beta)[..., None]    # 0 where r = 0
        target = restored + np.clip(r, -t, t)                                   # w - e
        step, level0 = least_squares_line(target, codes, s, offset.astype(np.float64))
        beta *= HQQ_KAPPA
    return best[0], best[1], best[2], np.array(history)


def block_values(lut, xsum, scales, offsets, bits, blocks):
    """What each block adds to y: scale * (lut + c * xsum) + offset * xsum, (N, M, nblocks)."""
    c = np.float32((2**bits - 1) / 2)
    wg, xs = blocks.weight_group, xsum[:, None, :]
    return scales[None, :, wg] * (lut + c * xs) + offsets[None, :, wg] * xs


def epilogue(lut, xsum, scales, offsets, bits, blocks):
    """y (N, M) = sum over blocks of block_values, from 0.0 in block order."""
    return sequential_sum(block_values(lut, xsum, scales, offsets, bits, blocks))


def lut_matmul(codes, scales, offsets, bits, x, act_group_size, lut="int8"):
    """y = x @ W.T by table lookup for affine groups: the tables, lookups and sums every format
    shares (``lut_matmul.lut_and_sums``), then this module's epilogue. Returns (N, M) float32."""
    blocks, lut_values, xsum = lut_and_sums(codes, bits, scales.shape[1], x, act_group_size, lut)
    return epilogue(lut_values, xsum, scales, offsets, bits, blocks)


def dequant_matmul(codes, scales, offsets, x):
    """Dequantize, then y (N, M) = sum_k w[m, k] * x[n, k] from 0.0 in increasing k."""
    w = dequantize(codes, scales, offsets)
    return sequential_sum(np.asarray(x, np.float32)[:, None, :] * w[None, :, :])
