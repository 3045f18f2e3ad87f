"""x86 SIMD primitives (AVX-512 VBMI/VNNI/BW, AVX2) for Numba, as calls of LLVM x86 intrinsics.

Only call one from a kernel that :mod:`tmac.kernels.dispatch` selected for a CPU that has the
ISA: compiling e.g. ``vpermb`` for a CPU without AVX-512 VBMI aborts the process (an LLVM
error, not a Python exception). Register types and the generic primitives they combine with
are in :mod:`tmac.kernels.simd.generic`.

=====================  =============================================================
AVX-512 VBMI/VNNI      permb512 (vpermb), dpbusd512 (vpdpbusd), permps512 (vpermps)
AVX-512 BW             pshufb512
AVX2                   pshufb256, maddubs256, maddwd256, permps256, lut16_f32_256
=====================  =============================================================
"""
from __future__ import annotations

from llvmlite import ir

from tmac.kernels.jit import intrinsic
from tmac.kernels.simd.generic import _F32, _I8, _I16, _I32, _Vec, _as, _back, _call, _lanes, v256, v512

__all__ = ["permb512", "dpbusd512", "permps512", "pshufb512", "pshufb256", "maddubs256",
           "maddwd256", "permps256", "lut16_f32_256"]


def _make_x86(name, vt: _Vec, in_elems, out_elem, doc, order=None):
    """A call of one x86 LLVM intrinsic whose operands are all ``vt``-wide.

    ``in_elems`` gives the lane type of each LLVM operand; ``order[j]`` is the Python argument
    that becomes LLVM operand ``j`` (so Python signatures can read like the assembly).
    """
    order = tuple(range(len(in_elems))) if order is None else order

    def typer(args):
        if any(a != vt for a in args):
            return None

        def codegen(context, builder, sig, llargs):
            ops = [_as(builder, llargs[j], vt, e) for j, e in zip(order, in_elems)]
            return _back(builder, _call(builder, name, _lanes(vt, out_elem), ops), vt)

        return vt(*args), codegen

    # numba intrinsics cannot take *args: one fixed-arity wrapper per operand count
    if len(in_elems) == 2:
        @intrinsic
        def prim(typingctx, a, b):
            return typer((a, b))
    else:
        @intrinsic
        def prim(typingctx, a, b, c):
            return typer((a, b, c))

    prim.__doc__ = doc
    return prim


permb512 = _make_x86(
    "llvm.x86.avx512.permvar.qi.512", v512, (_I8, _I8), _I8,
    "permb512(idx, table): byte i = table[idx[i] & 63] (AVX-512 VBMI vpermb).", order=(1, 0))
permps512 = _make_x86(
    "llvm.x86.avx512.permvar.sf.512", v512, (_F32, _I32), _F32,
    "permps512(idx, table): float32 lane i = table[idx[i] & 15] (AVX-512F vpermps).", order=(1, 0))
dpbusd512 = _make_x86(
    "llvm.x86.avx512.vpdpbusd.512", v512, (_I32, _I8, _I8), _I32,
    "dpbusd512(acc, u8, s8): int32 lane j = acc[j] + sum_{t<4} u8[4j+t] * s8[4j+t] (AVX-512 VNNI).")
pshufb512 = _make_x86(
    "llvm.x86.avx512.pshuf.b.512", v512, (_I8, _I8), _I8,
    "pshufb512(table, idx): per 128-bit lane, out[i] = table[lane][idx[i] & 15], 0 if idx[i] < 0 (AVX-512BW).")
pshufb256 = _make_x86(
    "llvm.x86.avx2.pshuf.b", v256, (_I8, _I8), _I8,
    "pshufb256(table, idx): per 128-bit lane, out[i] = table[lane][idx[i] & 15], 0 if idx[i] < 0 (AVX2).")
maddubs256 = _make_x86(
    "llvm.x86.avx2.pmadd.ub.sw", v256, (_I8, _I8), _I16,
    "maddubs256(u8, s8): int16 lane j = sat16(u8[2j]*s8[2j] + u8[2j+1]*s8[2j+1]) (AVX2 vpmaddubsw).")
maddwd256 = _make_x86(
    "llvm.x86.avx2.pmadd.wd", v256, (_I16, _I16), _I32,
    "maddwd256(a, b): int32 lane j = a[2j]*b[2j] + a[2j+1]*b[2j+1] on int16 lanes (AVX2 vpmaddwd).")
permps256 = _make_x86(
    "llvm.x86.avx2.permps", v256, (_F32, _I32), _F32,
    "permps256(idx, table): float32 lane i = table[idx[i] & 7] (AVX2 vpermps).", order=(1, 0))


@intrinsic
def lut16_f32_256(typingctx, idx, tlo, thi):
    """lut16_f32_256(idx, tlo, thi): float32 lane i = (tlo ++ thi)[idx[i] & 15] (AVX2: two
    vpermps and a blend on bit 3 of the index)."""
    if idx != v256 or tlo != v256 or thi != v256:
        return None

    def codegen(context, builder, sig, args):
        i = _as(builder, args[0], v256, _I32)
        f8, i8t = _lanes(v256, _F32), _lanes(v256, _I32)
        fnty = ir.FunctionType(f8, [f8, i8t])
        perm = builder.module.declare_intrinsic("llvm.x86.avx2.permps", fnty=fnty)
        a = builder.call(perm, [_as(builder, args[1], v256, _F32), i])
        b = builder.call(perm, [_as(builder, args[2], v256, _F32), i])
        bit3 = builder.and_(i, ir.Constant(i8t, [8] * 8))
        high = builder.icmp_unsigned("!=", bit3, ir.Constant(i8t, [0] * 8))
        return _back(builder, builder.select(high, b, a), v256)

    return v256(idx, tlo, thi), codegen


__all__ += ["bcast128_256", "lut16_f32_256"]
