"""The epilogue of the LUT product, written once for every ISA path: per row and block,

    zero-point form  (float32 scales; zeros uint8 or float32)   block = s * (lut + (c - z) * xsum)
    affine form      (scales and offsets as float16 bits, uint16) block = s * (lut + c * xsum) + m * xsum

with c = float32((2^bits - 1) / 2), in exactly the order of tmac.reference.lut_matmul.epilogue
and tmac.reference.affine.epilogue (float32, no fused multiply-add; ``c - z`` is the contract's
single subtraction ``offset = float32((2^b - 1)/2) - zero``). The form is chosen at compile time
from the dtype of the scales, so each kernel specialization holds one form and no branch.

    s, f = group_params(sc, off, base, cv)     registers of a block's 16 (v512) or 8 (v256) rows
    block = combine(lut, s, f, xv, cv, sc)      the rows' block values
    s, f = group_params_scalar(sc, off, tile, wg, r, c); combine_scalar(lut, s, f, xs, c, sc)

and, for the dequantize-then-multiply baseline, the weights themselves in each form:
(code - z) * s, or code * s + m (``weights``).
"""
from __future__ import annotations

import numpy as np
from numba.core import types

from tmac.kernels.jit import overload
from tmac.kernels.simd.generic import add_f32, half_to_float, loadf, mul_f32, sub_f32


def _affine(sc):
    return sc.dtype == types.uint16


def group_params(sc, off, base, cv):
    """(s, f) for the rows at sc.flat[base:]: scales, and c - zero (zero-point form) or the
    offsets m (affine form); registers as wide as cv."""


@overload(group_params, inline="always")
def _group_params(sc, off, base, cv):
    if _affine(sc):
        return lambda sc, off, base, cv: (loadf(sc, base, cv), loadf(off, base, cv))
    return lambda sc, off, base, cv: (loadf(sc, base, cv), sub_f32(cv, loadf(off, base, cv)))


def combine(lut, s, f, xv, cv, sc):
    """The block value from the lut term, the group parameters and the block sum."""


@overload(combine, inline="always")
def _combine(lut, s, f, xv, cv, sc):
    if _affine(sc):
        return lambda lut, s, f, xv, cv, sc: add_f32(mul_f32(s, add_f32(lut, mul_f32(cv, xv))),
                                                     mul_f32(f, xv))
    return lambda lut, s, f, xv, cv, sc: mul_f32(s, add_f32(lut, mul_f32(f, xv)))


def group_params_scalar(sc, off, tile, wg, r, c):
    """(s, f) of row r of tile ``tile``, weight group wg, as float32 scalars."""


@overload(group_params_scalar, inline="always")
def _group_params_scalar(sc, off, tile, wg, r, c):
    if _affine(sc):
        return lambda sc, off, tile, wg, r, c: (half_to_float(sc[tile, wg, r]),
                                                half_to_float(off[tile, wg, r]))
    return lambda sc, off, tile, wg, r, c: (sc[tile, wg, r], c - np.float32(off[tile, wg, r]))


def combine_scalar(lut, s, f, xs, c, sc):
    """combine for one row, float32 scalars."""


@overload(combine_scalar, inline="always")
def _combine_scalar(lut, s, f, xs, c, sc):
    if _affine(sc):
        return lambda lut, s, f, xs, c, sc: s * (lut + c * xs) + f * xs
    return lambda lut, s, f, xs, c, sc: s * (lut + f * xs)


def weights(codes, sc, off, base):
    """The dequantized weights of the rows at sc.flat[base:], from their float32 codes."""


@overload(weights, inline="always")
def _weights(codes, sc, off, base):
    if _affine(sc):
        return lambda codes, sc, off, base: add_f32(mul_f32(codes, loadf(sc, base, codes)),
                                                    loadf(off, base, codes))
    return lambda codes, sc, off, base: mul_f32(sub_f32(codes, loadf(off, base, codes)),
                                                loadf(sc, base, codes))
