"""Architecture-independent SIMD primitives for Numba, emitted as generic LLVM vector IR.

LLVM lowers generic vector IR for whatever CPU it compiles for, so every primitive here is safe
on every path (x86 with or without AVX-512, ARM, plain "portable"); the architecture-specific
instructions (vpermb, vpdpbusd, pshufb, ...) live in ``tmac.kernels.simd.x86``.

Why: Numba's auto-vectorizer does not turn a table lookup into ``vpermb``/``pshufb``; it emits
gathers or scalar code (1-2 GB/s).  These primitives put the exact operations in the IR.

Two opaque vector types are defined, :data:`v512` (a zmm register) and :data:`v256` (a ymm
register).  Their LLVM type is ``<8 x i64>`` / ``<4 x i64>``; each primitive bitcasts to the lane
type it needs (``<64 x i8>``, ``<16 x i32>``, ``<16 x float>`` ...), which costs nothing.

Rules for callers:

* Loads and stores take a C-contiguous array and a *flat element index* (in units of the array's
  dtype); no bounds are checked.
* Float arithmetic is plain ``fadd``/``fmul`` with no fast-math flags, so LLVM never contracts
  into FMA: results round exactly like numpy float32.

Primitive groups (``*`` = works on both v512 and v256, chosen from the argument type):

=====================  =============================================================
memory                 load512/store512, load256/store256, bcast128_256, prefetch
integer*               vand, vor, vxor, add_i16, add_i32, sub_i8, srl_i16, srl_i32, sll_i32
shuffles (v256)        unpacklo_i8/unpackhi_i8/unpacklo_i64/unpackhi_i64, lanes_lo/lanes_hi,
                       widen_lo_i16/widen_hi_i16
constants              zero512/zero256, set1_i8_512, set1_i32_512, set1_f32_512 (and _256), set1_i16_256
float*                 add_f32, mul_f32, sub_f32, neg_f32, cvt_i32_f32, max_f32, hmax4_f32
table build            store_tables4_f32, store_tables4_int8, absum4
parameters             loadf (float32, uint8 integers, float16 bits), half_to_float
=====================  =============================================================
"""
from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import models, register_model

from tmac.kernels.jit import intrinsic

__all__ = [
    "v512", "v256",
    "load512", "store512", "load256", "store256", "hsum8_f32",
    "vand", "vor", "vxor", "add_i16", "add_i32", "sub_i8", "srl_i16", "srl_i32", "sll_i32",
    "add_f32", "mul_f32", "sub_f32", "neg_f32", "cvt_i32_f32",
    "zero512", "zero256", "set1_i8_512", "set1_i32_512", "set1_f32_512",
    "set1_i8_256", "set1_i16_256", "set1_i32_256", "set1_f32_256",
    "store_tables4_f32", "store_tables4_int8", "bcast128_256", "prefetch", "loadf", "half_to_float",
    "absum4", "max_f32", "hmax4_f32",
    "unpacklo_i8", "unpackhi_i8", "unpacklo_i64", "unpackhi_i64", "lanes_lo", "lanes_hi",
    "widen_lo_i16", "widen_hi_i16",
]


class _Vec(types.Type):
    """A SIMD register of ``bits`` bits; lanes are reinterpreted by each primitive."""

    def __init__(self, bits: int):
        self.bits = bits
        super().__init__(name=f"v{bits}")


v512 = _Vec(512)
v256 = _Vec(256)


@register_model(_Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(ir.IntType(64), fe_type.bits // 64))


_I8, _I16, _I32, _F32 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.FloatType()


def _lanes(vt: _Vec, elem) -> ir.VectorType:
    """LLVM vector type of ``vt``'s width with lanes of ``elem``."""
    return ir.VectorType(elem, vt.bits // elem.width if isinstance(elem, ir.IntType) else vt.bits // 32)


def _as(builder, value, vt: _Vec, elem):
    return builder.bitcast(value, _lanes(vt, elem))


def _back(builder, value, vt: _Vec):
    return builder.bitcast(value, ir.VectorType(ir.IntType(64), vt.bits // 64))


def _call(builder, name, ret, args):
    """Declare (once per module) and call the LLVM intrinsic ``name``."""
    fnty = ir.FunctionType(ret, [a.type for a in args])
    fn = builder.module.declare_intrinsic(name, fnty=fnty)
    return builder.call(fn, args)


def _splat(builder, scalar, vtype: ir.VectorType):
    """Broadcast an LLVM scalar to every lane of ``vtype``."""
    n = vtype.count
    undef = ir.Constant(vtype, ir.Undefined)
    v = builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), n), [0] * n)
    return builder.shuffle_vector(v, undef, mask)


# ----------------------------------------------------------------------------- memory

def _vec_pointer(context, builder, arrty, arr, idx, vtype):
    ary = context.make_array(arrty)(context, builder, arr)
    ptr = builder.gep(ary.data, [idx])
    return builder.bitcast(ptr, vtype.as_pointer())


def _make_load(vt: _Vec):
    @intrinsic
    def load(typingctx, arr, idx):
        if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            lt = ir.VectorType(ir.IntType(64), vt.bits // 64)
            ptr = _vec_pointer(context, builder, sig.args[0], args[0], args[1], lt)
            return builder.load(ptr, align=1, typ=lt)

        return vt(arr, idx), codegen

    return load


def _make_store(vt: _Vec):
    @intrinsic
    def store(typingctx, arr, idx, value):
        if not isinstance(arr, types.Array) or value != vt:
            return None

        def codegen(context, builder, sig, args):
            lt = ir.VectorType(ir.IntType(64), vt.bits // 64)
            ptr = _vec_pointer(context, builder, sig.args[0], args[0], args[1], lt)
            builder.store(args[2], ptr, align=1)
            return context.get_dummy_value()

        return types.none(arr, idx, value), codegen

    return store


load512 = _make_load(v512)
load512.__doc__ = "load512(arr, i) -> v512: unaligned 64-byte load from ``arr.flat[i:]``."
store512 = _make_store(v512)
store512.__doc__ = "store512(arr, i, v): unaligned 64-byte store to ``arr.flat[i:]``."
load256 = _make_load(v256)
load256.__doc__ = "load256(arr, i) -> v256: unaligned 32-byte load from ``arr.flat[i:]``."
store256 = _make_store(v256)
store256.__doc__ = "store256(arr, i, v): unaligned 32-byte store to ``arr.flat[i:]``."


# ----------------------------------------------------------------------------- constants

def _make_const(vt: _Vec, elem, kind):
    if kind == "zero":
        @intrinsic
        def zero(typingctx):
            def codegen(context, builder, sig, args):
                return ir.Constant(ir.VectorType(ir.IntType(64), vt.bits // 64), None)
            return vt(), codegen
        return zero

    @intrinsic
    def set1(typingctx, x):
        if kind == "int" and not isinstance(x, types.Integer):
            return None
        if kind == "float" and not isinstance(x, (types.Float, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            (val,) = args
            if kind == "int":
                val = builder.trunc(val, elem) if val.type.width > elem.width else builder.sext(val, elem) \
                    if val.type.width < elem.width else val
            else:
                src = sig.args[0]
                if isinstance(src, types.Integer):
                    val = builder.sitofp(val, elem)
                elif src.bitwidth == 64:
                    val = builder.fptrunc(val, elem)
            return _back(builder, _splat(builder, val, _lanes(vt, elem)), vt)

        return vt(x), codegen
    return set1


zero512 = _make_const(v512, None, "zero")
zero256 = _make_const(v256, None, "zero")
set1_i8_512 = _make_const(v512, _I8, "int")
set1_i32_512 = _make_const(v512, _I32, "int")
set1_f32_512 = _make_const(v512, _F32, "float")
set1_i8_256 = _make_const(v256, _I8, "int")
set1_i16_256 = _make_const(v256, _I16, "int")
set1_i32_256 = _make_const(v256, _I32, "int")
set1_f32_256 = _make_const(v256, _F32, "float")


# ----------------------------------------------------------------------------- elementwise

def _make_binop(elem, op):
    """Lane-wise binary op on two vectors of the same width (v512 or v256)."""
    @intrinsic
    def binop(typingctx, a, b):
        if not isinstance(a, _Vec) or a != b:
            return None

        def codegen(context, builder, sig, args):
            vt = sig.args[0]
            x, y = (_as(builder, v, vt, elem) for v in args)
            return _back(builder, getattr(builder, op)(x, y), vt)

        return a(a, b), codegen
    return binop


vand = _make_binop(ir.IntType(64), "and_")
vor = _make_binop(ir.IntType(64), "or_")
vxor = _make_binop(ir.IntType(64), "xor")
add_i16 = _make_binop(_I16, "add")
add_i32 = _make_binop(_I32, "add")
sub_i8 = _make_binop(_I8, "sub")
add_f32 = _make_binop(_F32, "fadd")
mul_f32 = _make_binop(_F32, "fmul")
sub_f32 = _make_binop(_F32, "fsub")
for _f, _d in ((vand, "bitwise and"), (vor, "bitwise or"), (vxor, "bitwise xor"),
               (add_i16, "int16 lane add (wrapping)"), (add_i32, "int32 lane add (wrapping)"), (sub_i8, "int8 lane subtract (wrapping)"),
               (add_f32, "float32 lane add, IEEE round to nearest, never fused"),
               (mul_f32, "float32 lane multiply, IEEE round to nearest, never fused"),
               (sub_f32, "float32 lane subtract (a - b), IEEE round to nearest")):
    _f.__doc__ = f"{_f.__name__}(a, b): {_d}."


def _make_shift(elem, op):
    """Lane-wise logical shift of every ``elem`` lane by the same (runtime) count."""
    @intrinsic
    def shift(typingctx, a, n):
        if not isinstance(a, _Vec) or not isinstance(n, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            vt = sig.args[0]
            x = _as(builder, args[0], vt, elem)
            cnt = builder.trunc(args[1], elem) if args[1].type.width > elem.width else args[1]
            return _back(builder, getattr(builder, op)(x, _splat(builder, cnt, x.type)), vt)

        return a(a, n), codegen
    return shift


srl_i16 = _make_shift(_I16, "lshr")
srl_i16.__doc__ = "srl_i16(v, n): logical right shift of each 16-bit lane by n (0 <= n < 16)."
srl_i32 = _make_shift(_I32, "lshr")
srl_i32.__doc__ = "srl_i32(v, n): logical right shift of each 32-bit lane by n (0 <= n < 32)."
sll_i32 = _make_shift(_I32, "shl")
sll_i32.__doc__ = "sll_i32(v, n): left shift of each 32-bit lane by n (0 <= n < 32)."


@intrinsic
def neg_f32(typingctx, a):
    """neg_f32(v): float32 lanes negated (sign bit flipped: exact, -0.0 for +0.0)."""
    if not isinstance(a, _Vec):
        return None

    def codegen(context, builder, sig, args):
        vt = sig.args[0]
        return _back(builder, builder.fneg(_as(builder, args[0], vt, _F32)), vt)

    return a(a), codegen


@intrinsic
def cvt_i32_f32(typingctx, a):
    """cvt_i32_f32(v): int32 lanes -> float32 lanes (exact below 2**24, else round to nearest)."""
    if not isinstance(a, _Vec):
        return None

    def codegen(context, builder, sig, args):
        vt = sig.args[0]
        return _back(builder, builder.sitofp(_as(builder, args[0], vt, _I32), _lanes(vt, _F32)), vt)

    return a(a), codegen


# ----------------------------------------------------------------------------- shuffles (v256)
#
# Fixed lane permutations as LLVM shufflevector with a constant mask: LLVM picks the instruction
# (vpunpck*, vperm2i128, vpshufb with a constant, vpermd ...) for the CPU it compiles for.

def _make_shuffle(elem, mask, doc):
    """An intrinsic f(a, b) -> v256 whose ``elem`` lane j is lane mask[j] of a ++ b."""
    lanes = 256 // elem.width

    def codegen(context, builder, sig, args):
        a = _as(builder, args[0], v256, elem)
        b = _as(builder, args[1], v256, elem)
        mask_ir = ir.Constant(ir.VectorType(_I32, lanes), list(mask))
        return _back(builder, builder.shuffle_vector(a, b, mask_ir), v256)

    @intrinsic
    def shuffle(typingctx, a, b):
        return (v256(a, b), codegen) if a == v256 and b == v256 else None

    shuffle.__doc__ = doc
    return shuffle


def _unpack_mask(per_lane, half):
    """vpunpck{l,h}: per 128-bit lane, the low (half 0) or high half of a's and b's
    ``per_lane`` elements, interleaved a0 b0 a1 b1 ..."""
    n, count = per_lane // 2, 2 * per_lane
    return [src + lane * per_lane + half * n + j
            for lane in range(2) for j in range(n) for src in (0, count)]


unpacklo_i8 = _make_shuffle(_I8, _unpack_mask(16, 0),
                            "unpacklo_i8(a, b): per lane, bytes 0..7 of a and b interleaved (vpunpcklbw).")
unpackhi_i8 = _make_shuffle(_I8, _unpack_mask(16, 1),
                            "unpackhi_i8(a, b): per lane, bytes 8..15 of a and b interleaved (vpunpckhbw).")
unpacklo_i64 = _make_shuffle(ir.IntType(64), _unpack_mask(2, 0),
                             "unpacklo_i64(a, b): per lane, [a.q0, b.q0] (vpunpcklqdq).")
unpackhi_i64 = _make_shuffle(ir.IntType(64), _unpack_mask(2, 1),
                             "unpackhi_i64(a, b): per lane, [a.q1, b.q1] (vpunpckhqdq).")
lanes_lo = _make_shuffle(ir.IntType(64), [0, 1, 4, 5],
                         "lanes_lo(a, b): [a's low 128-bit lane, b's low lane] (vinserti128).")
lanes_hi = _make_shuffle(ir.IntType(64), [2, 3, 6, 7],
                         "lanes_hi(a, b): [a's high 128-bit lane, b's high lane] (vperm2i128).")


def _make_widen(lane):
    @intrinsic
    def widen(typingctx, v):
        if v != v256:
            return None

        def codegen(context, builder, sig, args):
            x = _as(builder, args[0], v256, _I16)
            i32x8 = ir.VectorType(_I32, 8)
            part = builder.shuffle_vector(x, ir.Constant(x.type, ir.Undefined),
                                          ir.Constant(i32x8, list(range(8 * lane, 8 * lane + 8))))
            return _back(builder, builder.sext(part, i32x8), v256)

        return v256(v), codegen
    return widen


widen_lo_i16 = _make_widen(0)
widen_lo_i16.__doc__ = "widen_lo_i16(v) -> v256: int16 lanes 0..7 of v sign-extended to 8 int32 (vpmovsxwd)."
widen_hi_i16 = _make_widen(1)
widen_hi_i16.__doc__ = "widen_hi_i16(v) -> v256: int16 lanes 8..15 of v sign-extended to 8 int32."


# ----------------------------------------------------------------------------- table build
#
# Generic LLVM vector IR (no x86 intrinsic): LLVM lowers it for whatever CPU it compiles for,
# so these are safe on every path. They build the tables of 4 consecutive groups at once.

_ODD = list(range(1, 16, 2))


def _group_tables_odd(builder, xs):
    """xs <16 x float> (groups q = 0..3, x_t at lane 4q + t) -> <32 x float> odd entries,
    lane 8q + h = T_q[2h + 1] = (((x0 + s1 x1) + s2 x2) + s3 x3) in contract order."""
    f32x32 = ir.VectorType(_F32, 32)
    i32x32 = ir.VectorType(_I32, 32)
    undef = ir.Constant(ir.VectorType(_F32, 16), ir.Undefined)
    bcast = [builder.shuffle_vector(xs, undef, ir.Constant(ir.VectorType(_I32, 32),
                                    [4 * q + t for q in range(4) for _ in range(8)]))
             for t in range(4)]
    total = bcast[0]                                          # sigma_0 = +1 for odd j
    for t in (1, 2, 3):
        sign = [0 if (j >> t) & 1 else 0x80000000 for _ in range(4) for j in _ODD]
        flipped = builder.bitcast(builder.xor(builder.bitcast(bcast[t], i32x32),
                                              ir.Constant(i32x32, sign)), f32x32)
        total = builder.fadd(total, flipped)
    return total


def _mirror_mask():
    """Shuffle mask taking (odd <32>, negated <32>) to 4 full tables: lane 16q + j."""
    mask = []
    for q in range(4):
        for j in range(16):
            h = (j if j & 1 else 15 - j) // 2
            mask.append(8 * q + h + (0 if j & 1 else 32))
    return ir.Constant(ir.VectorType(_I32, 64), mask)


@intrinsic
def store_tables4_f32(typingctx, out, idx, xs):
    """store_tables4_f32(out, i, xs): float32 tables of 4 groups (xs = their 16 activations,
    a v512) into out.flat[i:i+64]; mirror build, negative zeros turned into +0.0."""
    if not isinstance(out, types.Array) or xs != v512:
        return None

    def codegen(context, builder, sig, args):
        x = _as(builder, args[2], v512, _F32)
        odd = _group_tables_odd(builder, x)
        zero = ir.Constant(odd.type, [0.0] * 32)
        pos = builder.fadd(odd, zero)
        neg = builder.fadd(builder.fneg(odd), zero)
        full = builder.shuffle_vector(pos, neg, _mirror_mask())
        ptr = _vec_pointer(context, builder, sig.args[0], args[0], args[1], full.type)
        builder.store(full, ptr, align=1)
        return context.get_dummy_value()

    return types.none(out, idx, xs), codegen


@intrinsic
def store_tables4_int8(typingctx, out, idx, xs, inv):
    """store_tables4_int8(out, i, xs, inv): int8 tables of 4 groups into out.flat[i:i+64].

    xs: v512 of the 4 groups' activations; inv: v512 of float32 inverse scales, lane 4q used
    for group q. Each odd entry is clip(rint(T * inv), -127, 127) (clipping first in float,
    which is the same for finite values and also right for inf), the rest its negation."""
    if not isinstance(out, types.Array) or xs != v512 or inv != v512:
        return None

    def codegen(context, builder, sig, args):
        x = _as(builder, args[2], v512, _F32)
        iv = _as(builder, args[3], v512, _F32)
        odd = _group_tables_odd(builder, x)
        undef = ir.Constant(iv.type, ir.Undefined)
        inv32 = builder.shuffle_vector(iv, undef, ir.Constant(ir.VectorType(_I32, 32),
                                       [4 * q for q in range(4) for _ in range(8)]))
        v = builder.fmul(odd, inv32)
        lo = ir.Constant(v.type, [-127.0] * 32)
        hi = ir.Constant(v.type, [127.0] * 32)
        v = builder.select(builder.fcmp_ordered("<", v, lo), lo, v)
        v = builder.select(builder.fcmp_ordered(">", v, hi), hi, v)
        fnty = ir.FunctionType(v.type, [v.type])
        v = builder.call(builder.module.declare_intrinsic("llvm.rint.v32f32", fnty=fnty), [v])
        q = builder.trunc(builder.fptosi(v, ir.VectorType(_I32, 32)), ir.VectorType(_I8, 32))
        neg = builder.sub(ir.Constant(q.type, [0] * 32), q)
        full = builder.shuffle_vector(q, neg, _mirror_mask())
        ptr = _vec_pointer(context, builder, sig.args[0], args[0], args[1], full.type)
        builder.store(full, ptr, align=1)
        return context.get_dummy_value()

    return types.none(out, idx, xs, inv), codegen




# ----------------------------------------------------------------------------- broadcast, prefetch

@intrinsic
def bcast128_256(typingctx, arr, idx):
    """bcast128_256(arr, i) -> v256: the 16 bytes at arr.flat[i:] (i in elements) in both
    128-bit lanes (vbroadcasti128), e.g. one 16-entry int8 table for pshufb256."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        t16 = ir.VectorType(_I8, 16)
        ptr = _vec_pointer(context, builder, sig.args[0], args[0], args[1], t16)
        v = builder.load(ptr, align=1, typ=t16)
        both = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, 32), list(range(16)) * 2))
        return _back(builder, both, v256)

    return v256(arr, idx), codegen


@intrinsic
def prefetch(typingctx, arr, idx):
    """prefetch(arr, i): hint the cache line of arr.flat[i] into L1 (no fault if out of range)."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        ptr = _vec_pointer(context, builder, sig.args[0], args[0], args[1], _I8)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, _I32, _I32, _I32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", fnty=fnty)
        builder.call(fn, [ptr, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return types.none(arr, idx), codegen




def _half_bits_to_float(builder, h32):
    """IR: float16 bit patterns (zero-extended to i32 lanes, or one i32) -> float32, exactly,
    with integer operations only (no F16C, no libcall): normal numbers move their exponent and
    mantissa into place, subnormals and zeros are mantissa * 2^-24, infinities and NaNs keep
    their payload. The sign bit is carried over in every case."""
    ity = h32.type
    fty = ir.VectorType(_F32, ity.count) if isinstance(ity, ir.VectorType) else _F32

    def const(v, t=ity):
        return ir.Constant(t, [v] * t.count) if isinstance(t, ir.VectorType) else ir.Constant(t, v)

    sign = builder.shl(builder.and_(h32, const(0x8000)), const(16))
    em = builder.and_(h32, const(0x7FFF))                       # exponent and mantissa
    normal = builder.add(builder.shl(em, const(13)), const(0x38000000))
    special = builder.or_(builder.shl(em, const(13)), const(0x7F800000))
    tiny = builder.bitcast(builder.fmul(builder.sitofp(em, fty), const(2.0 ** -24, fty)), ity)
    bits = builder.select(builder.icmp_unsigned("<", em, const(0x400)), tiny,
                          builder.select(builder.icmp_unsigned(">=", em, const(0x7C00)),
                                         special, normal))
    return builder.bitcast(builder.or_(bits, sign), fty)


def _has_f16c(context):
    """Whether the CPU Numba compiles for converts float16 in hardware (F16C, AVX-512F): then
    LLVM lowers a float16 widening to vcvtph2ps. Elsewhere (or on another architecture) the
    integer-only conversion is used: never a library call the JIT could not resolve."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return "+f16c" in features.split(",")


@intrinsic
def loadf(typingctx, arr, idx, like):
    """loadf(arr, i, like) -> float32 lanes (as many as ``like``, a v512 or v256) from
    arr.flat[i:]: a float32 array is loaded as it is, uint8 and int8 arrays are taken as
    integers (exact conversion), a uint16 array as float16 bit patterns (exact widening: vcvtph2ps
    where the CPU has F16C, else integer operations only). Safe on every CPU."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer) or like not in (v512, v256):
        return None
    if arr.dtype not in (types.float32, types.uint8, types.int8, types.uint16):
        return None
    kind = str(arr.dtype)
    vt = like
    lanes = vt.bits // 32

    def codegen(context, builder, sig, args):
        if kind == "float32":
            lt = ir.VectorType(ir.IntType(64), vt.bits // 64)
            ptr = _vec_pointer(context, builder, sig.args[0], args[0], args[1], lt)
            return builder.load(ptr, align=1, typ=lt)
        narrow = ir.VectorType(_I16 if kind == "uint16" else _I8, lanes)
        ptr = _vec_pointer(context, builder, sig.args[0], args[0], args[1], narrow)
        loaded = builder.load(ptr, align=1, typ=narrow)
        f32s = ir.VectorType(_F32, lanes)
        if kind == "int8":
            return _back(builder, builder.sitofp(builder.sext(loaded, ir.VectorType(_I32, lanes)),
                                                 f32s), vt)
        if kind == "uint16" and _has_f16c(context):      # one vcvtph2ps instead of ~10 ops
            halves = builder.bitcast(loaded, ir.VectorType(ir.HalfType(), lanes))
            return _back(builder, builder.fpext(halves, f32s), vt)
        wide = builder.zext(loaded, ir.VectorType(_I32, lanes))
        if kind == "uint8":
            return _back(builder, builder.uitofp(wide, f32s), vt)
        return _back(builder, _half_bits_to_float(builder, wide), vt)

    return vt(arr, idx, like), codegen


@intrinsic
def half_to_float(typingctx, bits):
    """half_to_float(h) -> float32: the value of the float16 bit pattern in the low 16 bits of
    the integer ``h``, exactly (the scalar form of loadf's uint16 case)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        h = args[0]
        h = builder.trunc(h, _I32) if h.type.width > 32 else builder.zext(h, _I32) \
            if h.type.width < 32 else h
        return _half_bits_to_float(builder, builder.and_(h, ir.Constant(_I32, 0xFFFF)))

    return types.float32(bits), codegen


# ----------------------------------------------------------------------------- table scales
#
# Generic LLVM vector IR (safe on every CPU), used by the int8 table scales.

@intrinsic
def absum4(typingctx, xs):
    """absum4(xs) -> v512: for the 4 groups of 4 float32 activations in ``xs``, every lane
    4q..4q+3 holds ((|x0| + |x1|) + |x2|) + |x3| of group q (contract order, float32)."""
    if xs != v512:
        return None

    def codegen(context, builder, sig, args):
        f16 = _lanes(v512, _F32)
        i16 = _lanes(v512, _I32)
        a = builder.bitcast(builder.and_(builder.bitcast(args[0], i16), ir.Constant(i16, [0x7FFFFFFF] * 16)), f16)
        undef = ir.Constant(f16, ir.Undefined)
        parts = [builder.shuffle_vector(a, undef, ir.Constant(i16, [4 * (j // 4) + t for j in range(16)]))
                 for t in range(4)]
        total = builder.fadd(builder.fadd(builder.fadd(parts[0], parts[1]), parts[2]), parts[3])
        return _back(builder, total, v512)

    return v512(xs), codegen


@intrinsic
def max_f32(typingctx, a, b):
    """max_f32(a, b): float32 lane-wise IEEE maximum (NaN propagates, like numpy's max)."""
    if a != v512 or b != v512:
        return None

    def codegen(context, builder, sig, args):
        f16 = _lanes(v512, _F32)
        fn = builder.module.declare_intrinsic("llvm.maximum.v16f32", fnty=ir.FunctionType(f16, [f16, f16]))
        return _back(builder, builder.call(fn, [_as(builder, args[0], v512, _F32),
                                                _as(builder, args[1], v512, _F32)]), v512)

    return v512(a, b), codegen


@intrinsic
def hmax4_f32(typingctx, v):
    """hmax4_f32(v) -> float32: IEEE maximum of lanes 0, 4, 8 and 12 (one per 4-group)."""
    if v != v512:
        return None

    def codegen(context, builder, sig, args):
        f = _as(builder, args[0], v512, _F32)
        fn = builder.module.declare_intrinsic("llvm.maximum.f32", fnty=ir.FunctionType(_F32, [_F32, _F32]))
        e = [builder.extract_element(f, ir.Constant(_I32, 4 * q)) for q in range(4)]
        return builder.call(fn, [builder.call(fn, [e[0], e[1]]), builder.call(fn, [e[2], e[3]])])

    return types.float32(v), codegen


@intrinsic
def hsum8_f32(typingctx, v):
    """hsum8_f32(v) -> float32: the 8 float32 lanes of a v256 added in a fixed order,
    ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))."""
    if v != v256:
        return None

    def codegen(context, builder, sig, args):
        f = _as(builder, args[0], v256, _F32)
        e = [builder.extract_element(f, ir.Constant(_I32, i)) for i in range(8)]
        pairs = [builder.fadd(e[i], e[i + 1]) for i in range(0, 8, 2)]
        return builder.fadd(builder.fadd(pairs[0], pairs[1]), builder.fadd(pairs[2], pairs[3]))

    return types.float32(v), codegen
