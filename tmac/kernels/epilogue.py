"""The group parameters of the LUT product and of the dequant baseline, written once for every
ISA path and every parameter form. The form is chosen at compile time from the types of the
kernels' ``sc`` and ``off`` arguments (tmac.layout.PackedCodes), so each specialization holds one
form and no branch:

    form (sc, off)                              group parameters s, f per row
    zero point   float32, zeros uint8/float32   s = scale,        f = c - zero
    fixed zero   float16 bits, float32 scalar   s = scale,        f = c - zero    (Q4_0, Q8_0, TQ*)
    affine       float16 bits, float16 bits     s = scale,        f = offset      (affine, Q4_1)
    two-level    (d, sc) tuple, (dmin, mn)      s = d * sc,       f = -(dmin * mn) (Q2_K, Q4_K, Q5_K)
    two-level    (d, sc) tuple, float32 scalar  s = d * sc,       f = c - zero    (Q3_K, Q6_K)

with c = float32((2^bits - 1) / 2), d and dmin float16 per super-block of 256 columns and sc, mn
small integers per group (their products are exact in float32). The block value of a row is

    zero-point forms   block = s * (lut + f * xsum)
    affine forms       block = s * (lut + c * xsum) + f * xsum

in exactly the order of tmac.reference.lut_matmul and tmac.reference.affine (float32, no fused
multiply-add), and the dequantized weight (code - zero) * s, or code * s + f.

    s, f = group_params(sc, off, base, cv)     registers of 16 (v512) or 8 (v256) rows whose
                                               per-group parameters sit at flat index ``base``
    block = combine(lut, s, f, xv, cv, sc, off)
    s, f = group_params_scalar(sc, off, tile, wg, r, c); combine_scalar(lut, s, f, xs, c, sc, off)
    w = weights(codes, sc, off, base)          dequantized weights from float32 codes
    weight_groups(sc)                          weight groups per row
"""
from __future__ import annotations

import numpy as np
from numba.core import types

from tmac.kernels.jit import overload
from tmac.kernels.simd.generic import (add_f32, half_to_float, loadf, mul_f32, neg_f32, set1_f32_256,
                                       set1_f32_512, sub_f32)


def _two_level(sc):
    return isinstance(sc, types.BaseTuple)


def _affine(sc, off):
    """Whether the (sc, off) types make an affine form (offsets rather than zeros)."""
    if _two_level(sc):
        return isinstance(off, types.BaseTuple)
    return sc.dtype == types.uint16 and isinstance(off, types.Array)


def _broadcast(cv):
    return set1_f32_512 if cv.bits == 512 else set1_f32_256


def weight_groups(sc):
    """Weight groups per row of the parameters ``sc``."""


@overload(weight_groups, inline="always")
def _weight_groups(sc):
    if _two_level(sc):
        return lambda sc: sc[1].shape[1]
    return lambda sc: sc.shape[1]


def super_base(sc, base):
    """Flat index of the super-block parameters of the group parameters at ``base``: a row tile's
    groups per super-block are contiguous, so (tile * groups + wg) // per = tile * supers + sb."""


@overload(super_base, inline="always")
def _super_base(sc, base):
    def impl(sc, base):
        per = sc[1].shape[1] // sc[0].shape[1]
        return ((base >> 6) // per << 6) + (base & 63)
    return impl


def scales(sc, base, like):
    """The rows' effective scales: float32/float16 per group, or d * sc (two-level, exact)."""


@overload(scales, inline="always")
def _scales(sc, base, like):
    if _two_level(sc):
        return lambda sc, base, like: mul_f32(loadf(sc[0], super_base(sc, base), like),
                                              loadf(sc[1], base, like))
    return lambda sc, base, like: loadf(sc, base, like)


def group_params(sc, off, base, cv):
    """(s, f) for the rows at flat index ``base`` (see the module docstring)."""


@overload(group_params, inline="always")
def _group_params(sc, off, base, cv):
    if isinstance(off, types.Float):                          # a fixed zero for the matrix
        set1 = _broadcast(cv)
        return lambda sc, off, base, cv: (scales(sc, base, cv), sub_f32(cv, set1(off)))
    if _two_level(sc):                                        # f = -(dmin * mn), exactly
        return lambda sc, off, base, cv: (
            scales(sc, base, cv),
            neg_f32(mul_f32(loadf(off[0], super_base(sc, base), cv), loadf(off[1], base, cv))))
    if _affine(sc, off):
        return lambda sc, off, base, cv: (loadf(sc, base, cv), loadf(off, base, cv))
    return lambda sc, off, base, cv: (loadf(sc, base, cv), sub_f32(cv, loadf(off, base, cv)))


def combine(lut, s, f, xv, cv, sc, off):
    """The block value from the lut term, the group parameters and the block sum."""


@overload(combine, inline="always")
def _combine(lut, s, f, xv, cv, sc, off):
    if _affine(sc, off):
        return lambda lut, s, f, xv, cv, sc, off: add_f32(
            mul_f32(s, add_f32(lut, mul_f32(cv, xv))), mul_f32(f, xv))
    return lambda lut, s, f, xv, cv, sc, off: mul_f32(s, add_f32(lut, mul_f32(f, xv)))


def weights(codes, sc, off, base):
    """The dequantized weights of the rows at ``base``, from their float32 codes."""


@overload(weights, inline="always")
def _weights(codes, sc, off, base):
    if _affine(sc, off):
        def impl(codes, sc, off, base):
            s, f = group_params(sc, off, base, codes)
            return add_f32(mul_f32(codes, s), f)
        return impl
    if isinstance(off, types.Float):
        set1 = _broadcast(codes)
        return lambda codes, sc, off, base: mul_f32(sub_f32(codes, set1(off)),
                                                    scales(sc, base, codes))
    return lambda codes, sc, off, base: mul_f32(sub_f32(codes, loadf(off, base, codes)),
                                                scales(sc, base, codes))


# ---- scalar forms (the portable kernels) ---------------------------------------------------------

def _scalar(a, i):
    """Element i of a parameter array as float32: float16 bits widened, integers converted."""


@overload(_scalar, inline="always")
def _scalar_impl(a, i):
    if a.dtype == types.uint16:
        return lambda a, i: half_to_float(a.flat[i])
    return lambda a, i: np.float32(a.flat[i])


def scale_scalar(sc, tile, wg, r):
    """(scale of row r, flat index of its super-block parameters, flat index of its group's)."""


@overload(scale_scalar, inline="always")
def _scale_scalar(sc, tile, wg, r):
    if _two_level(sc):
        def impl(sc, tile, wg, r):
            per = sc[1].shape[1] // sc[0].shape[1]
            i = (tile * sc[1].shape[1] + wg) * 64 + r
            si = (tile * sc[0].shape[1] + wg // per) * 64 + r
            return _scalar(sc[0], si) * _scalar(sc[1], i), si, i
        return impl

    def impl(sc, tile, wg, r):
        i = (tile * sc.shape[1] + wg) * 64 + r
        return _scalar(sc, i), i, i
    return impl


def group_params_scalar(sc, off, tile, wg, r, c):
    """(s, f) of row r of row tile ``tile``, weight group wg, as float32 scalars."""


@overload(group_params_scalar, inline="always")
def _group_params_scalar(sc, off, tile, wg, r, c):
    if isinstance(off, types.Float):
        return lambda sc, off, tile, wg, r, c: (scale_scalar(sc, tile, wg, r)[0], c - off)
    if _two_level(sc):
        def impl(sc, off, tile, wg, r, c):
            s, si, i = scale_scalar(sc, tile, wg, r)
            return s, -(_scalar(off[0], si) * _scalar(off[1], i))
        return impl
    if _affine(sc, off):
        def impl(sc, off, tile, wg, r, c):
            s, _, i = scale_scalar(sc, tile, wg, r)
            return s, _scalar(off, i)
        return impl

    def impl(sc, off, tile, wg, r, c):
        s, _, i = scale_scalar(sc, tile, wg, r)
        return s, c - _scalar(off, i)
    return impl


def combine_scalar(lut, s, f, xs, c, sc, off):
    """combine for one row, float32 scalars."""


@overload(combine_scalar, inline="always")
def _combine_scalar(lut, s, f, xs, c, sc, off):
    if _affine(sc, off):
        return lambda lut, s, f, xs, c, sc, off: s * (lut + c * xs) + f * xs
    return lambda lut, s, f, xs, c, sc, off: s * (lut + f * xs)
