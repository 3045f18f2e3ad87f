"""``expf``: a float32 exp that LLVM vectorizes, for softmax and SiLU in the model runtime.

Numba lowers ``np.exp`` to a call of the C library's ``expf`` unless LLVM is built with Intel's
SVML, which the PyPI llvmlite is not, so a loop of ``np.exp`` runs one element at a time: a
SwiGLU over 1536 values took ~7.5 µs, a decode step's softmax several more per layer. This
version is straight-line arithmetic, so a loop over it becomes 16-wide AVX-512 code (~1 µs).

The method (Cody and Waite's range reduction with the polynomial of Cephes' ``expf``):

    n = round(x / ln 2)            x = n ln 2 + r,  |r| <= ln 2 / 2
    r = x - n * C1 - n * C2        C1 + C2 = ln 2, C1 with few bits so n * C1 is exact
    exp(r) ~= 1 + r + r^2 P(r)     P of degree 5
    exp(x) = exp(r) * 2^n          2^n made by writing n + 127 into the exponent bits

Inputs are clamped to [-87, 88], where 2^n stays a normal float32: larger inputs give
~1.7e38 instead of inf, smaller ones ~1.6e-38 instead of 0; NaN stays NaN. Within that range
the error against the exact value is at most 4 ulp, 1.5 ulp on average (tests/test_model_ops.py
checks it against numpy's float64 exp). The result of one input does not depend on where it
sits in a loop, so any split over threads gives the same bits.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import types

from tmac.kernels.jit import intrinsic, njit

# Only flags that cannot change a result's bits: no "reassoc"/"contract"/"arcp", whose effect
# depends on how LLVM vectorizes a loop in its context (inlined into the fused model step, or
# compiled alone), which would make the bits depend on the caller and on the cache state; no
# "nnan"/"ninf": NaN must propagate. Sums vectorize through explicit lanes instead (ops.dot).
FAST = {"nsz"}

LOG2E = np.float32(1.44269504088896341)
LN2_HIGH = np.float32(0.693359375)              # 8 significant bits: n * LN2_HIGH is exact
LN2_LOW = np.float32(-2.12194440e-4)             # ln 2 - LN2_HIGH
# Cephes expf: exp(r) ~= 1 + r + r^2 (P0 r^5 + ... + P5), |r| <= ln 2 / 2
P = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                   4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
LOWEST, HIGHEST = np.float32(-87.0), np.float32(88.0)


@intrinsic
def float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bit pattern is the low 32 bits of the integer ``bits``."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = args[0] if bits.bitwidth == 32 else builder.trunc(args[0], ir.IntType(32))
        return builder.bitcast(low, ir.FloatType())

    return types.float32(bits), codegen


@njit(cache=True, inline="always", fastmath=FAST)
def expf(x):
    """exp(x) for a float32 x, within 4 ulp on [-87, 88] (clamped outside; see module doc)."""
    x = min(max(x, LOWEST), HIGHEST)
    n = np.floor(x * LOG2E + np.float32(0.5))
    r = x - n * LN2_HIGH - n * LN2_LOW
    p = P[0]
    p = p * r + P[1]
    p = p * r + P[2]
    p = p * r + P[3]
    p = p * r + P[4]
    p = p * r + P[5]
    p = p * r * r + r + np.float32(1.0)
    return p * float32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
