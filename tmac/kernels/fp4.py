"""Dequantize-then-multiply GEMV/GEMM kernels for 4-bit weights: the M0E4 bit trick and its twins.

Three kernels share one loop and one layout and differ only in how a 4-bit code q becomes a
float32 weight:

    m0e4_matmul   bit trick, no int-to-float conversion:
                      v = bitcast<float32>(0x3F800000 | (q << 19))       (= 1 + q/16, exact)
                      w = (v * a) + b
    int4_matmul   int-to-float conversion (the usual dequantization):
                      w = (float32(q) - zero) * scale
    e2m1_matmul   E2M1 value built from the code's bits (see _e2m1_nibble): w = value(q) * scale

and then y[n, m] = 0.0, y = y + w[m, k] * x[n, k] for k = 0, 1, ... (float32, no FMA), exactly
the order of tmac.reference (m0e4.dequant_matmul, dequant_matmul.dequant_matmul,
e2m1.dequant_matmul), so every kernel equals its reference bit for bit.

Layout (``pack``): rows in tiles of 64; for each tile and each k, the 64 codes are 32 bytes,
byte j holding row j in its low nibble and row j + 32 in its high nibble:

    packed (n_tiles, K, 32) uint8       params (n_tiles, G, 64) float32 (rows padded with 0)

so that, for a fixed k, the 64 rows' weights come from 32 consecutive bytes and the 64 row
accumulators are 4 zmm registers: both loops over rows vectorize. Rows are split over threads
by tile; K is never split (the sum order is fixed).

The bit decoders are small LLVM intrinsics (32-bit integer ops and a bitcast) (no ISA-specific code), so these kernels run
on every CPU Numba compiles for ("portable" in tmac.kernels.dispatch). Nothing compiles at import.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba.core import types

from tmac.kernels.jit import intrinsic, njit, prange

TILE = 64
HALF = TILE // 2
FP32_ONE = 0x3F800000
FP32_SHIFT = 19


I32 = ir.IntType(32)


def _const(value):
    return ir.Constant(I32, value)


def _nibble_decoder(high, float_bits):
    """An intrinsic: uint8 byte -> float32, from the low (or high) nibble q of the byte.

    ``float_bits(builder, q)`` emits the 32-bit integer IR that turns q (an i32 in 0..15) into
    float32 bits; the result is reinterpreted by an LLVM ``bitcast``, so no int-to-float
    conversion happens anywhere. 32-bit IR is written out because Numba would widen uint32
    arithmetic to 64 bits. Portable to every CPU.
    """
    @intrinsic
    def decode(typingctx, byte):
        if byte != types.uint8:
            return None

        def codegen(context, builder, signature, args):
            q = builder.zext(args[0], I32)
            q = builder.lshr(q, _const(4)) if high else builder.and_(q, _const(15))
            return builder.bitcast(float_bits(builder, q), ir.FloatType())

        return types.float32(byte), codegen
    return decode


def _m0e4_bits(builder, q):
    """M0E4: bits = (q << 19) | 0x3F800000, the float32 1 + q/16."""
    return builder.or_(builder.shl(q, _const(FP32_SHIFT)), _const(FP32_ONE))


def _e2m1_bits(builder, q):
    """E2M1 (code = s e1 e0 m, mag = e1 e0 m), bit operations only:

        sign   = (code & 8) << 28                               bit 3 -> float32 bit 31
        normal = (mag << 22) + (126 << 23)     (e > 0)           exponent e - 1 + 127, mantissa m
        sub    = (-mag) & (126 << 23)          (e = 0: mag < 2)  0.0, or 0.5 = 2^-1
        bits   = sign | select(mag < 2, sub, normal)
    """
    sign = builder.shl(builder.and_(q, _const(8)), _const(28))
    mag = builder.and_(q, _const(7))
    normal = builder.add(builder.shl(mag, _const(22)), _const(126 << 23))
    sub = builder.and_(builder.neg(mag), _const(126 << 23))
    return builder.or_(sign, builder.select(builder.icmp_unsigned("<", mag, _const(2)), sub, normal))


m0e4_low = _nibble_decoder(False, _m0e4_bits)
m0e4_high = _nibble_decoder(True, _m0e4_bits)
e2m1_low = _nibble_decoder(False, _e2m1_bits)
e2m1_high = _nibble_decoder(True, _e2m1_bits)


# ---- layout ------------------------------------------------------------------------------------

def _row_tiles(a, dtype):
    """(M, C) -> (ceil(M / 64), C, 64) of ``dtype``: rows in tiles of 64, a tile's rows last;
    padding rows are 0."""
    a = np.asarray(a, dtype)
    m, c = a.shape
    n_tiles = -(-m // TILE)
    padded = np.zeros((n_tiles * TILE, c), dtype)
    padded[:m] = a
    return padded.reshape(n_tiles, TILE, c).transpose(0, 2, 1)


def pack(codes):
    """codes (M, K) uint8 in 0..15 -> (ceil(M / 64), K, 32) uint8, see the module docstring."""
    tiles = _row_tiles(codes, np.uint8)                                 # (tiles, K, 64)
    return np.ascontiguousarray(tiles[..., :HALF] | (tiles[..., HALF:] << 4))


def pack_params(params):
    """(M, G) float32 -> (ceil(M / 64), G, 64) float32; padding rows are 0."""
    return np.ascontiguousarray(_row_tiles(params, np.float32))


# ---- one k: 32 bytes -> 64 weights, three ways ---------------------------------------------------

@njit(inline="always")
def dequant_m0e4(pk, a, b, w):
    """w[r] = (v * a[r]) + b[r], v = 1 + q/16 by the bit trick. pk (32,) uint8; a, b, w (64,)."""
    for j in range(HALF):
        byte = pk[j]
        w[j] = m0e4_low(byte) * a[j] + b[j]
        w[j + HALF] = m0e4_high(byte) * a[j + HALF] + b[j + HALF]


@njit(inline="always")
def dequant_int4(pk, scales, zeros, w):
    """w[r] = (float32(q) - zero[r]) * scale[r], with an int32-to-float32 conversion."""
    for j in range(HALF):
        byte = np.int32(pk[j])
        w[j] = (np.float32(np.int32(byte & 15)) - zeros[j]) * scales[j]
        w[j + HALF] = (np.float32(np.int32(byte >> 4)) - zeros[j + HALF]) * scales[j + HALF]


@njit(inline="always")
def dequant_e2m1(pk, scales, unused, w):
    """w[r] = value(q) * scale[r], the E2M1 value built from the code's bits (no table, no gather)."""
    for j in range(HALF):
        byte = pk[j]
        w[j] = e2m1_low(byte) * scales[j]
        w[j + HALF] = e2m1_high(byte) * scales[j + HALF]


@njit(inline="always")
def _axpy(acc, w, xk):
    for r in range(TILE):
        acc[r] += w[r] * xk


M0E4, INT4, E2M1 = 0, 1, 2       # decoders of the shared kernel


@njit(inline="always")
def _dequant_one_k(decoder, pk, first, second, w):
    """64 weights of one k: (first, second) are (a, b) for M0E4, (scales, zeros) for int4,
    (scales, unused) for E2M1."""
    if decoder == M0E4:
        dequant_m0e4(pk, first, second, w)
    elif decoder == INT4:
        dequant_int4(pk, first, second, w)
    else:
        dequant_e2m1(pk, first, second, w)


@njit(cache=True, parallel=True)
def dequant_kernel(decoder, packed, p1, p2, x, out):
    """The shared loop: tiles of 64 rows in parallel; per tile, groups in order, k in order; per
    k, 64 weights, then one axpy per token. packed (T, K, 32) uint8, p1/p2 (T, G, 64) float32,
    x (N, K) float32 -> out (N, T*64). The decoder branch is taken once per 64 weights."""
    n_tiles, k_cols = packed.shape[0], packed.shape[1]
    n_groups = p1.shape[1]
    group = k_cols // n_groups
    n_tok = x.shape[0]
    for t in prange(n_tiles):
        w = np.empty(TILE, np.float32)
        acc = np.zeros((n_tok, TILE), np.float32)
        for wg in range(n_groups):
            first, second = p1[t, wg], p2[t, wg]
            for kk in range(group):
                k = wg * group + kk
                _dequant_one_k(decoder, packed[t, k], first, second, w)
                for n in range(n_tok):
                    _axpy(acc[n], w, x[n, k])
        for n in range(n_tok):
            for r in range(TILE):
                out[n, t * TILE + r] = acc[n, r]


# ---- entry points (arrays already validated; see tmac.formats.fp4 for the ops) -------

def _run(decoder, packed, p1, p2, x, m):
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty((x.shape[0], packed.shape[0] * TILE), np.float32)
    dequant_kernel(decoder, packed, p1, p2, x, out)
    return np.ascontiguousarray(out[:, :m])


def m0e4_matmul(packed, a_packed, b_packed, x, m):
    """(N, M) float32; equals tmac.reference.m0e4.dequant_matmul bit for bit."""
    return _run(M0E4, packed, a_packed, b_packed, x, m)


def int4_matmul(packed, scales_packed, zeros_packed, x, m):
    """(N, M) float32; equals tmac.reference.dequant_matmul.dequant_matmul bit for bit."""
    return _run(INT4, packed, scales_packed, zeros_packed, x, m)


def e2m1_matmul(packed, scales_packed, x, m):
    """(N, M) float32; equals tmac.reference.e2m1.dequant_matmul bit for bit."""
    return _run(E2M1, packed, scales_packed, scales_packed, x, m)
