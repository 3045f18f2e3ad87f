"""llama.cpp's GGML block types, decoded into tmac's view: unsigned integer codes with a float
scale and a float offset per group of weights. Plain numpy, one small class per type.

What a block type is
--------------------
A GGUF file stores each weight matrix row by row, every row cut into *blocks* of consecutive
weights (32 for the legacy types Q4_0 ... Q8_0, 256 for the K-quants and the ternary types).
A block is a fixed number of bytes holding small integers and the float16 number(s) that turn
them back into weights. The K-quants are *two-level*: a 256-weight super-block has one float16
``d`` (and ``dmin``) and 8 or 16 sub-blocks, each with a small integer scale (and min) that
multiplies ``d`` (``dmin``). The float types F32, F16 and BF16 have no integers: a "block" is
one value.

tmac's view
-----------
Every integer type is decoded to the same three things, so that one table-lookup kernel serves
them all:

    codes    unsigned integers in [0, 2^bits), in the natural weight order
    scale    one float32 per group of ``group_size`` consecutive weights
    second   symmetric types: the fixed integer zero point ``zero``;
             affine types:    one float32 offset per group

    symmetric (form "symmetric"):  w = (float32(code) - zero) * scale
    affine    (form "affine"):     w = float32(code) * scale + offset    (two roundings)

For the signed formats the stored integer q becomes code = q + zero (Q8_0: int8 q, code
q + 128). The two-level scales are multiplied out: scale = float32(d) * float32(sc) and
offset = -(float32(dmin) * float32(mn)). These products are exact in float32 -- a float16 has
11 significant bits and a sub-block scale or min at most 8 -- and so are code - zero,
(code - zero) * scale and code * scale: the integer multiplying d's 11-bit significand is at
most 2^12 in magnitude (Q6_K: |sc * (code - 32)| <= 128 * 32), so every product fits in 23 of
float32's 24 bits (float16 subnormals included; their float32 products are never subnormal).
``dequantize`` therefore equals gguf-py's ``gguf.quants.dequantize`` (and llama.cpp) bit for
bit, although gguf multiplies in another order (e.g. Q6_K ``(d * sc) * q``): the only rounding
is the final add of the affine types (gguf's ``d * q + m`` and ``dl * q - ml``; x - y is
x + (-y) in IEEE arithmetic, signed zeros included).

Shapes and dtypes
-----------------
``BlockType.decode(raw)`` takes raw bytes (uint8, (n_blocks, type_size) or any shape whose size
is a multiple of type_size) and returns a ``Decoded``:

    codes   (n_blocks, block_size)      uint8    tmac's unsigned code (float types: (n_blocks, 0))
    d       (n_blocks,)                 float16  the block's (super-block's) scale as stored
    m       (n_blocks,)                 float16  Q4_1, Q5_1: the block's minimum (the offset)
    dmin    (n_blocks,)                 float16  Q2_K, Q4_K, Q5_K: the super-block min scale
    sc      (n_blocks, n_sub)           uint8    Q2_K 0..15, Q4_K/Q5_K 0..63
                                        int8     Q3_K -32..31 (stored 6-bit value - 32), Q6_K
    mn      (n_blocks, n_sub)           uint8    Q2_K 0..15, Q4_K/Q5_K 0..63
    values  (n_blocks,)                 float32  F32, F16, BF16: the exact values

Fields a type does not have are None. ``decode_matrix`` gives the same fields for a whole
tensor of numpy shape (M, K): codes (M, K), d/m/dmin (M, K // block_size), sc/mn
(M, K // group_size), values (M, K). ``Decoded.group_params()`` returns (scale, second) with
scale of shape (..., K // group_size) float32 (block form: (n_blocks, block_size // group_size)),
and ``Decoded.dequantize()`` the float32 weights in the shape of the codes.

``encode`` is the exact inverse of ``decode``: every bit of every block type is used, so
``encode(decode(raw))`` reproduces raw byte for byte -- except for TQ1_0, whose bytes pack five
(or four) trits in base 3 and so have more byte values than trit combinations: ``encode`` writes
the canonical byte (the one llama.cpp and gguf write), so for TQ1_0 ``decode(encode(x)) == x``
always and ``encode(decode(raw)) == raw`` for canonical bytes.

``quantize`` reproduces llama.cpp's reference quantizers (the bytes of ``gguf.quants.quantize``)
for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, TQ1_0 and TQ2_0. For the K-quants it is a simple min/max fit
(not llama.cpp's search; see ``_KQuant``), valid blocks close to w.

All multi-byte numbers are little-endian, as in GGUF.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QK_K = 256          # weights per K-quant / ternary super-block


# ---------------------------------------------------------------------------------------------
# Small helpers: float16 fields and bit fields
# ---------------------------------------------------------------------------------------------

def _f16(field):
    """(n, 2) uint8 little-endian bytes -> (n,) float16."""
    return np.ascontiguousarray(field).view("<f2").reshape(-1).astype(np.float16)


def _f16_bytes(x):
    """(n,) float16 (or values exactly representable in float16) -> (n, 2) uint8."""
    return np.asarray(x).astype("<f2").reshape(-1, 1).view(np.uint8)


def _unpack_fields(packed, width, run):
    """Bit fields of ``width`` bits (1, 2 or 4), packed so that within each run of ``run``
    consecutive bytes, byte l holds weights l, l + run, l + 2 run, ... from its lowest bits up.
    (n, nbytes) uint8 -> (n, nbytes * 8 // width) uint8, in weight order."""
    n, nbytes = packed.shape
    shifts = np.arange(0, 8, width, dtype=np.uint8).reshape(1, 1, -1, 1)
    fields = (packed.reshape(n, nbytes // run, 1, run) >> shifts) & np.uint8((1 << width) - 1)
    return fields.reshape(n, -1)


def _pack_fields(values, width, run):
    """The inverse of ``_unpack_fields``: (n, count) small integers -> (n, count * width // 8)."""
    n, count = values.shape
    per_byte = 8 // width
    v = values.astype(np.uint8).reshape(n, count // (run * per_byte), per_byte, run)
    packed = np.zeros((n, count // (run * per_byte), run), dtype=np.uint8)
    for i in range(per_byte):
        packed |= v[:, :, i, :] << np.uint8(i * width)
    return packed.reshape(n, -1)


def _unpack_trits(packed, count):
    """Base-3 digits packed by TQ1_0: byte l of the run holds ``count`` trits, the weights
    l, l + run, l + 2 run, ... (run = number of bytes). A byte is ceil(v * 256 / 243) for the
    5-digit base-3 number v whose most significant digit is the first weight; digit p is read
    by multiplying by 3^p modulo 256 (the higher digits overflow out of the byte) and taking the
    top of the result times 3: ((x * 3^p mod 256) * 3) >> 8.
    (n, run) uint8 -> (n, count * run) uint8 in 0..2."""
    x = packed.astype(np.uint16)[:, None, :]
    powers = (3 ** np.arange(count, dtype=np.uint16)).reshape(1, -1, 1)
    trits = (((x * powers) & 0xFF) * 3) >> 8
    return trits.astype(np.uint8).reshape(packed.shape[0], -1)


def _pack_trits(trits, count):
    """The inverse of ``_unpack_trits`` (canonical bytes): (n, count * run) in 0..2 -> (n, run).
    With count 4 the missing fifth (least significant) digit is 0."""
    n = trits.shape[0]
    t = trits.astype(np.uint32).reshape(n, count, -1)
    weights = (3 ** np.arange(4, 4 - count, -1, dtype=np.uint32)).reshape(1, -1, 1)
    v = (t * weights).sum(axis=1)                       # 0 .. 242
    return ((v * 256 + 242) // 243).astype(np.uint8)    # ceil(v * 256 / 243)


def _round_half_away(x):
    """C's roundf: to the nearest integer, halves away from zero (float32 in, float32 out).
    Computed as floor(|x|) + [frac(|x|) >= 0.5], exact (floor(|x| + 0.5) is not)."""
    a = np.abs(x)
    f = np.floor(a)
    r = f + (a - f >= np.float32(0.5)).astype(np.float32)
    return np.copysign(r, x).astype(np.float32)


def _reciprocal_or_zero(d):
    """1 / d in float32, 0 where d == 0."""
    safe = np.where(d == 0, np.float32(1), d)
    return np.where(d == 0, np.float32(0), np.float32(1) / safe).astype(np.float32)


def _check_range(name, what, a, lo, hi):
    if a is None:
        raise ValueError(f"{name}: encode needs {what}, got None")
    a = np.asarray(a)
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{name}: {what} must lie in [{lo}, {hi}], got values in "
                         f"[{a.min()}, {a.max()}]")


# ---------------------------------------------------------------------------------------------
# Decoded blocks
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Decoded:
    """The fields of a run of blocks (``BlockType.decode``) or of a whole tensor
    (``decode_matrix``); see the module docstring for shapes. ``name`` is the block type."""
    name: str
    codes: np.ndarray
    d: np.ndarray | None = None
    m: np.ndarray | None = None
    dmin: np.ndarray | None = None
    sc: np.ndarray | None = None
    mn: np.ndarray | None = None
    values: np.ndarray | None = None

    @classmethod
    def from_fields(cls, name, **fields) -> Decoded:
        """``Decoded(name, codes=..., d=..., ...)`` for block type ``name`` (ValueError if
        unsupported), the fields as in the module docstring (block or matrix form)."""
        return cls(get(name).name, **fields)

    @property
    def block_type(self) -> BlockType:
        return get(self.name)

    def _per_group(self, per_block):
        """A per-block array (..., K // block_size) (block form: (n_blocks,)) -> float32
        (..., K // group_size), each block's value repeated for its groups."""
        bt = self.block_type
        length = self.codes.shape[-1]
        p = np.asarray(per_block).astype(np.float32).reshape(
            self.codes.shape[:-1] + (length // bt.block_size,))
        return np.repeat(p, bt.block_size // bt.group_size, axis=-1)

    def _sub(self, sub):
        """A sub-block array -> float32 (..., K // group_size)."""
        bt = self.block_type
        shape = self.codes.shape[:-1] + (self.codes.shape[-1] // bt.group_size,)
        return np.asarray(sub).astype(np.float32).reshape(shape)

    def group_params(self):
        """(scale, second): scale float32 (..., K // group_size); second is the int ``zero`` for
        symmetric types and the float32 offset per group for affine types.

            Q4_0 Q5_0 Q8_0 TQ1_0 TQ2_0   scale = float32(d)                    second = zero
            Q3_K Q6_K                    scale = float32(d) * float32(sc)      second = zero
            Q4_1 Q5_1                    scale = float32(d)   offset = float32(m)
            Q2_K Q4_K Q5_K               scale = float32(d) * float32(sc)
                                         offset = -(float32(dmin) * float32(mn))
        All products exact."""
        bt = self.block_type
        if bt.form == "float":
            raise ValueError(f"{bt.name} is a float type: it has no codes or group parameters")
        scale = self._per_group(self.d)
        if bt.two_level:
            scale = (scale * self._sub(self.sc)).astype(np.float32)
        if bt.form == "symmetric":
            return scale, bt.zero
        if bt.two_level:
            offset = -(self._per_group(self.dmin) * self._sub(self.mn)).astype(np.float32)
        else:
            offset = self._per_group(self.m)
        return scale, offset

    def dequantize(self):
        """The float32 weights, in the shape of ``codes`` (float types: of ``values``):
        symmetric (float32(code) - zero) * scale, affine float32(code) * scale + offset."""
        bt = self.block_type
        if bt.form == "float":
            return np.array(self.values, dtype=np.float32)
        scale, second = self.group_params()
        c = self.codes.astype(np.float32).reshape(scale.shape + (bt.group_size,))
        if bt.form == "symmetric":
            w = (c - np.float32(second)) * scale[..., None]
        else:
            w = c * scale[..., None] + second[..., None]
        return w.astype(np.float32).reshape(self.codes.shape)


# ---------------------------------------------------------------------------------------------
# The block types
# ---------------------------------------------------------------------------------------------

class BlockType:
    """One GGML block type. Subclasses set the attributes and implement ``_unpack`` (bytes ->
    Decoded fields), ``_pack`` (the inverse) and ``_fit`` (weights -> Decoded)."""
    name: str
    block_size: int
    type_size: int
    bits: int | None = None
    group_size: int | None = None
    form: str = "float"
    zero: int | None = None
    two_level: bool = False

    def __repr__(self):
        return f"<GGML block type {self.name}: {self.block_size} weights in {self.type_size} bytes>"

    # -- bytes <-> fields ----------------------------------------------------------------------

    def _blocks(self, raw):
        """raw bytes (any shape, uint8 or another dtype viewed as bytes) -> (n, type_size)."""
        if isinstance(raw, (bytes, bytearray, memoryview)):
            raw = np.frombuffer(raw, dtype=np.uint8)
        raw = np.ascontiguousarray(raw)
        if raw.dtype != np.uint8:
            raw = raw.reshape(-1).view(np.uint8)
        if raw.size % self.type_size:
            raise ValueError(f"{self.name}: {raw.size} bytes is not a whole number of "
                             f"{self.type_size}-byte blocks")
        return raw.reshape(-1, self.type_size)

    def decode(self, raw) -> Decoded:
        """raw bytes -> Decoded (block form, see the module docstring)."""
        return Decoded(self.name, **self._unpack(self._blocks(raw)))

    def encode(self, decoded) -> np.ndarray:
        """Decoded (block form) -> raw (n_blocks, type_size) uint8; the inverse of ``decode``."""
        n = (decoded.values if self.form == "float" else decoded.codes).shape[0]
        if self.form != "float":
            if decoded.codes.shape != (n, self.block_size):
                raise ValueError(f"{self.name}: codes must have shape (n_blocks, "
                                 f"{self.block_size}), got {decoded.codes.shape}")
            _check_range(self.name, "codes", decoded.codes, 0, self._max_code)
            for f in self._fields:
                if getattr(decoded, f) is None:
                    raise ValueError(f"{self.name}: encode needs {f}, got None")
        raw = self._pack(decoded, n)
        assert raw.shape == (n, self.type_size) and raw.dtype == np.uint8
        return raw

    def dequantize(self, raw) -> np.ndarray:
        """raw bytes -> (n_blocks, block_size) float32, bit for bit gguf's dequantization."""
        w = self.decode(raw).dequantize()
        return w.reshape(-1, self.block_size)

    def quantize(self, w) -> np.ndarray:
        """float32 weights (size a multiple of block_size) -> raw (n_blocks, type_size)."""
        w = np.asarray(w, dtype=np.float32)
        if w.size % self.block_size:
            raise ValueError(f"{self.name}: {w.size} weights is not a whole number of "
                             f"{self.block_size}-weight blocks")
        w = w.reshape(-1, self.block_size)
        if self.form != "float" and not np.isfinite(w).all():
            raise ValueError(f"{self.name}: cannot quantize NaN or Inf weights")
        with np.errstate(over="ignore"):       # a float16 scale may overflow to inf, like gguf
            return self.encode(self._fit(w))

    @property
    def _max_code(self):
        return (1 << self.bits) - 1

    @property
    def _fields(self):
        """The parameter fields a block of this type stores."""
        if self.form == "float":
            return ("values",)
        if self.two_level:
            return ("d", "dmin", "sc", "mn") if self.form == "affine" else ("d", "sc")
        return ("d", "m") if self.form == "affine" else ("d",)


# -- float types ---------------------------------------------------------------------------------

class _Float(BlockType):
    block_size = 1

    def _pack(self, decoded, n):
        return self._to_bytes(np.asarray(decoded.values, dtype=np.float32).reshape(n))

    def _unpack(self, blocks):
        return dict(codes=np.empty((blocks.shape[0], 0), dtype=np.uint8),
                    values=self._from_bytes(blocks))


class F32(_Float):
    """One IEEE binary32 per "block":

        byte  0 1 2 3
              f f f f     little-endian float32
    """
    name, type_size = "F32", 4

    def _from_bytes(self, blocks):
        return blocks.view("<f4").reshape(-1).astype(np.float32)

    def _to_bytes(self, values):
        return values.astype("<f4").reshape(-1, 1).view(np.uint8)

    def _fit(self, w):
        return Decoded(self.name, np.empty((w.shape[0], 0), np.uint8), values=w.reshape(-1))


class F16(_Float):
    """One IEEE binary16 per "block":

        byte  0 1
              h h         little-endian float16 (sign, 5 exponent bits, 10 mantissa bits)

    Values are float32 conversions (exact; NaN payloads kept), encoded back exactly."""
    name, type_size = "F16", 2

    def _from_bytes(self, blocks):
        return _f16(blocks).astype(np.float32)

    def _to_bytes(self, values):
        return _f16_bytes(values.astype(np.float16))

    def _fit(self, w):
        # float32 -> float16, round to nearest even (numpy's cast, as gguf)
        with np.errstate(over="ignore"):
            v = w.reshape(-1).astype(np.float16).astype(np.float32)
        return Decoded(self.name, np.empty((w.shape[0], 0), np.uint8), values=v)


class BF16(_Float):
    """One bfloat16 per "block": the top half of a float32.

        byte  0 1
              b b         little-endian uint16 = float32 bits >> 16
                          (sign, 8 exponent bits, 7 mantissa bits)

    ``quantize`` rounds the float32 bits to nearest even (NaN forced quiet), like llama.cpp's
    ggml_compute_fp32_to_bf16; ``encode`` needs values that are bfloat16 numbers."""
    name, type_size = "BF16", 2

    def _from_bytes(self, blocks):
        top = np.ascontiguousarray(blocks).view("<u2").reshape(-1).astype(np.uint32)
        return (top << np.uint32(16)).view(np.float32)

    def _to_bytes(self, values):
        bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
        if (bits & np.uint32(0xFFFF)).any():
            raise ValueError("BF16: encode needs bfloat16 values (the low 16 bits of each "
                             "float32 zero); use quantize to round")
        return (bits >> np.uint32(16)).astype("<u2").reshape(-1, 1).view(np.uint8)

    def _fit(self, w):
        bits = w.reshape(-1).view(np.uint32).astype(np.uint64)
        is_nan = (bits & 0x7FFFFFFF) > 0x7F800000
        bits = np.where(is_nan, (bits & 0xFFFF0000) | 0x00400000, bits)
        top = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16           # round to nearest even
        v = (top.astype(np.uint32) << np.uint32(16)).view(np.float32)
        return Decoded(self.name, np.empty((w.shape[0], 0), np.uint8), values=v)


# -- legacy 32-weight blocks ---------------------------------------------------------------------

class _Legacy(BlockType):
    block_size = 32
    group_size = 32


class Q8_0(_Legacy):
    """8-bit, symmetric: w = d * q, q int8; tmac's code q + 128 (zero 128).

        byte  0-1     d        float16
        byte  2-33    q[32]    int8, weight k in byte 2 + k
    """
    name, type_size, bits, form, zero = "Q8_0", 34, 8, "symmetric", 128

    def _unpack(self, b):
        q = b[:, 2:34].view(np.int8)
        return dict(codes=(q.astype(np.int16) + 128).astype(np.uint8), d=_f16(b[:, 0:2]))

    def _pack(self, dec, n):
        q = (dec.codes.astype(np.int16) - 128).astype(np.int8).view(np.uint8)
        return np.concatenate([_f16_bytes(dec.d), q], axis=1)

    def _fit(self, w):
        # llama.cpp quantize_row_q8_0_ref: d = max|w| / 127, q = roundf(w / d)
        d = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32)
        q = _round_half_away(w * _reciprocal_or_zero(d)[:, None])
        codes = (q.astype(np.int16) + 128).astype(np.uint8)
        return Decoded(self.name, codes, d=d.astype(np.float16))


def _signed_max(w):
    """Per row, the element of largest magnitude, with its sign (the first one on ties)."""
    return np.take_along_axis(w, np.abs(w).argmax(axis=1)[:, None], axis=1)[:, 0]


class Q4_0(_Legacy):
    """4-bit, symmetric: w = d * (q - 8), q the stored nibble (tmac's code, zero 8).

        byte  0-1     d        float16
        byte  2-17    qs[16]   byte 2 + j: bits 0-3 weight j, bits 4-7 weight j + 16
    """
    name, type_size, bits, form, zero = "Q4_0", 18, 4, "symmetric", 8

    def _unpack(self, b):
        return dict(codes=_unpack_fields(b[:, 2:18], 4, 16), d=_f16(b[:, 0:2]))

    def _pack(self, dec, n):
        return np.concatenate([_f16_bytes(dec.d), _pack_fields(dec.codes, 4, 16)], axis=1)

    def _fit(self, w):
        # llama.cpp quantize_row_q4_0_ref: the signed extreme maps to q = 0 (w = -8 d),
        # q = min(15, trunc(w / d + 8.5)), with 1 / d taken before d is rounded to float16
        d = (_signed_max(w) / np.float32(-8)).astype(np.float32)
        x = w * _reciprocal_or_zero(d)[:, None] + np.float32(8.5)
        codes = np.clip(np.trunc(x), 0, 15).astype(np.uint8)
        return Decoded(self.name, codes, d=d.astype(np.float16))


class Q5_0(_Legacy):
    """5-bit, symmetric: w = d * (q - 16), q = low nibble | high bit << 4 (code, zero 16).

        byte  0-1     d        float16
        byte  2-5     qh       uint32 little-endian, bit k = bit 4 of weight k
        byte  6-21    qs[16]   byte 6 + j: bits 0-3 of weight j (low nibble), of j + 16 (high)
    """
    name, type_size, bits, form, zero = "Q5_0", 22, 5, "symmetric", 16

    def _unpack(self, b):
        high = np.unpackbits(b[:, 2:6], axis=1, bitorder="little")
        return dict(codes=_unpack_fields(b[:, 6:22], 4, 16) | (high << np.uint8(4)),
                    d=_f16(b[:, 0:2]))

    def _pack(self, dec, n):
        c = dec.codes.astype(np.uint8)
        qh = np.packbits(c >> np.uint8(4), axis=1, bitorder="little")
        return np.concatenate([_f16_bytes(dec.d), qh, _pack_fields(c & np.uint8(15), 4, 16)],
                              axis=1)

    def _fit(self, w):
        # llama.cpp quantize_row_q5_0_ref: as Q4_0 with 16 in place of 8
        d = (_signed_max(w) / np.float32(-16)).astype(np.float32)
        x = w * _reciprocal_or_zero(d)[:, None] + np.float32(16.5)
        codes = np.clip(np.trunc(x), 0, 31).astype(np.uint8)
        return Decoded(self.name, codes, d=d.astype(np.float16))


class Q4_1(_Legacy):
    """4-bit, affine: w = d * q + m, q the stored nibble (tmac's code).

        byte  0-1     d        float16
        byte  2-3     m        float16 (the block's minimum)
        byte  4-19    qs[16]   byte 4 + j: bits 0-3 weight j, bits 4-7 weight j + 16
    """
    name, type_size, bits, form = "Q4_1", 20, 4, "affine"

    def _unpack(self, b):
        return dict(codes=_unpack_fields(b[:, 4:20], 4, 16), d=_f16(b[:, 0:2]),
                    m=_f16(b[:, 2:4]))

    def _pack(self, dec, n):
        return np.concatenate([_f16_bytes(dec.d), _f16_bytes(dec.m),
                               _pack_fields(dec.codes, 4, 16)], axis=1)

    def _fit(self, w):
        return _fit_min_max(self, w)


class Q5_1(_Legacy):
    """5-bit, affine: w = d * q + m, q = low nibble | high bit << 4 (tmac's code).

        byte  0-1     d        float16
        byte  2-3     m        float16 (the block's minimum)
        byte  4-7     qh       uint32 little-endian, bit k = bit 4 of weight k
        byte  8-23    qs[16]   byte 8 + j: bits 0-3 of weight j (low nibble), of j + 16 (high)
    """
    name, type_size, bits, form = "Q5_1", 24, 5, "affine"

    def _unpack(self, b):
        high = np.unpackbits(b[:, 4:8], axis=1, bitorder="little")
        return dict(codes=_unpack_fields(b[:, 8:24], 4, 16) | (high << np.uint8(4)),
                    d=_f16(b[:, 0:2]), m=_f16(b[:, 2:4]))

    def _pack(self, dec, n):
        c = dec.codes.astype(np.uint8)
        qh = np.packbits(c >> np.uint8(4), axis=1, bitorder="little")
        return np.concatenate([_f16_bytes(dec.d), _f16_bytes(dec.m), qh,
                               _pack_fields(c & np.uint8(15), 4, 16)], axis=1)

    def _fit(self, w):
        return _fit_min_max(self, w)


def _fit_min_max(bt, w):
    """llama.cpp quantize_row_q4_1_ref / q5_1_ref: m = min, d = (max - min) / (2^bits - 1),
    q = min(2^bits - 1, trunc((w - min) / d + 0.5)), with 1 / d taken before rounding d."""
    top = (1 << bt.bits) - 1
    lo, hi = w.min(axis=1), w.max(axis=1)
    d = ((hi - lo) / np.float32(top)).astype(np.float32)
    x = (w - lo[:, None]) * _reciprocal_or_zero(d)[:, None] + np.float32(0.5)
    codes = np.clip(np.trunc(x), 0, top).astype(np.uint8)
    return Decoded(bt.name, codes, d=d.astype(np.float16), m=lo.astype(np.float16))


# -- ternary 256-weight blocks -------------------------------------------------------------------

class _Ternary(BlockType):
    block_size = QK_K
    group_size = QK_K
    bits, form, zero = 2, "symmetric", 1

    def _fit(self, w):
        # llama.cpp quantize_row_tq*_0_ref: d = max|w|, trit = roundf(w / d) + 1
        d = np.abs(w).max(axis=1).astype(np.float32)
        q = _round_half_away(w * _reciprocal_or_zero(d)[:, None])
        codes = (q.astype(np.int16) + 1).astype(np.uint8)
        return Decoded(self.name, codes, d=d.astype(np.float16))


class TQ2_0(_Ternary):
    """Ternary in 2 bits: w = d * (t - 1), t the stored 2-bit value (tmac's code, zero 1).
    The quantizer writes t in 0..2; the value 3 is readable (w = 2 d) and kept as code 3.

        byte  0-63    qs[64]   in two halves of 32 bytes: byte 32 h + l holds weights
                               128 h + l, +32, +64, +96 at bits 0-1, 2-3, 4-5, 6-7
        byte  64-65   d        float16
    """
    name, type_size = "TQ2_0", 66

    def _unpack(self, b):
        return dict(codes=_unpack_fields(b[:, 0:64], 2, 32), d=_f16(b[:, 64:66]))

    def _pack(self, dec, n):
        return np.concatenate([_pack_fields(dec.codes, 2, 32), _f16_bytes(dec.d)], axis=1)


class TQ1_0(_Ternary):
    """Ternary in 1.6875 bits: w = d * (t - 1), t a trit 0..2 (tmac's code, zero 1), five
    trits per byte as a base-3 number scaled to a byte (see ``_unpack_trits``).

        byte  0-31    qs[32]   byte l: weights l, l + 32, l + 64, l + 96, l + 128
        byte  32-47   qs[16]   byte 32 + l: weights 160 + l, +16, +32, +48, +64
        byte  48-51   qh[4]    byte 48 + l: weights 240 + l, +4, +8, +12 (four trits)
        byte  52-53   d        float16
    (the first weight of a byte is its most significant base-3 digit)
    """
    name, type_size = "TQ1_0", 54

    def _unpack(self, b):
        codes = np.concatenate([_unpack_trits(b[:, 0:32], 5), _unpack_trits(b[:, 32:48], 5),
                                _unpack_trits(b[:, 48:52], 4)], axis=1)
        return dict(codes=codes, d=_f16(b[:, 52:54]))

    def _pack(self, dec, n):
        c = dec.codes
        return np.concatenate([_pack_trits(c[:, 0:160], 5), _pack_trits(c[:, 160:240], 5),
                               _pack_trits(c[:, 240:256], 4), _f16_bytes(dec.d)], axis=1)

    @property
    def _max_code(self):
        return 2


# -- K-quants: 256-weight super-blocks with sub-block scales -------------------------------------

def _unpack_scale_min_k4(s):
    """Q4_K/Q5_K's 12 bytes -> 8 six-bit scales and 8 six-bit mins:

        byte 0-3    bits 0-5: sc[0..3]     bits 6-7: bits 4-5 of sc[4..7]
        byte 4-7    bits 0-5: mn[0..3]     bits 6-7: bits 4-5 of mn[4..7]
        byte 8-11   bits 0-3: low 4 bits of sc[4..7], bits 4-7: low 4 bits of mn[4..7]
    """
    a, b, c = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([a & 63, (c & 15) | ((a >> 6) << 4)], axis=1)
    mn = np.concatenate([b & 63, (c >> 4) | ((b >> 6) << 4)], axis=1)
    return sc.astype(np.uint8), mn.astype(np.uint8)


def _pack_scale_min_k4(sc, mn):
    sc, mn = sc.astype(np.uint8), mn.astype(np.uint8)
    a = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    b = (mn[:, 0:4] & 63) | ((mn[:, 4:8] >> 4) << 6)
    c = (sc[:, 4:8] & 15) | ((mn[:, 4:8] & 15) << 4)
    return np.concatenate([a, b, c], axis=1).astype(np.uint8)


class _KQuant(BlockType):
    """Shared by the K-quants. ``quantize`` is a simple fit, not llama.cpp's search:

    affine (Q2_K, Q4_K, Q5_K), per sub-block: lo = min(min w, 0), hi = max w, sub-scale
        s = (hi - lo) / (2^bits - 1), sub-min n = -lo >= 0; super-block d = max s / S,
        dmin = max n / S (S = 15 for Q2_K's 4-bit fields, 63 for 6-bit), rounded to float16;
        sc = clip(rint(s / d), 0, S), mn = clip(rint(n / dmin), 0, S).
    symmetric (Q3_K, Q6_K), per sub-block: s = the signed extreme / -zero (it maps to code 0);
        d = the s of largest magnitude / -R, R = 32 (Q3_K, sc in -32..31) or 128 (Q6_K, int8),
        rounded to float16; sc = clip(rint(s / d), -R, R - 1).
    Then codes are the nearest level of the effective (scale, offset) of ``group_params``,
    clipped to [0, 2^bits) (scale 0: code zero, or 0 for affine).
    """
    block_size = QK_K
    two_level = True
    sc_max = 63           # affine: largest sub-scale/min; symmetric: R (sc in -R..R-1)

    def _fit(self, w):
        n, n_sub = w.shape[0], QK_K // self.group_size
        g = w.astype(np.float64).reshape(n, n_sub, self.group_size)
        top = self._max_code
        if self.form == "affine":
            lo = np.minimum(g.min(axis=2), 0.0)
            s = (g.max(axis=2) - lo) / top
            d = _f16_or_raise(self, s.max(axis=1) / self.sc_max)
            dmin = _f16_or_raise(self, (-lo).max(axis=1) / self.sc_max)
            sc = _rint_ratio(s, d, 0, self.sc_max).astype(np.uint8)
            mn = _rint_ratio(-lo, dmin, 0, self.sc_max).astype(np.uint8)
            dec = Decoded(self.name, np.zeros((n, QK_K), np.uint8), d=d, dmin=dmin, sc=sc, mn=mn)
        else:
            r = self.sc_max
            s = np.take_along_axis(g, np.abs(g).argmax(axis=2)[..., None], axis=2)[..., 0]
            s = s / -self.zero
            d = _f16_or_raise(self, np.take_along_axis(
                s, np.abs(s).argmax(axis=1)[:, None], axis=1)[:, 0] / -r)
            sc = _rint_ratio(s, d, -r, r - 1).astype(np.int8)
            dec = Decoded(self.name, np.zeros((n, QK_K), np.uint8), d=d, sc=sc)
        scale, second = dec.group_params()
        scale = scale.astype(np.float64)[..., None]
        offset = 0.0 if self.form == "symmetric" else second.astype(np.float64)[..., None]
        zero = self.zero if self.form == "symmetric" else 0
        safe = np.where(scale == 0, 1.0, scale)
        q = np.where(scale == 0, 0.0, np.rint((g - offset) / safe)) + zero
        codes = np.clip(q, 0, top).astype(np.uint8).reshape(n, QK_K)
        return Decoded(self.name, codes, d=dec.d, dmin=dec.dmin, sc=dec.sc, mn=dec.mn)

    def _check_sub(self, dec, n):
        n_sub = QK_K // self.group_size
        for what in ("sc", "mn") if self.form == "affine" else ("sc",):
            a = getattr(dec, what)
            lo, hi = (0, self.sc_max) if self.form == "affine" else (-self.sc_max,
                                                                      self.sc_max - 1)
            _check_range(self.name, what, a, lo, hi)
            if np.shape(a) != (n, n_sub):
                raise ValueError(f"{self.name}: {what} must have shape (n_blocks, {n_sub}), "
                                 f"got {np.shape(a)}")


def _f16_or_raise(bt, x):
    """float64 -> float16; ValueError if it overflows."""
    h = x.astype(np.float16)
    if not np.isfinite(h).all():
        raise ValueError(f"{bt.name}: weights too large for a float16 super-block scale")
    return h


def _rint_ratio(x, d, lo, hi):
    """clip(rint(x / d), lo, hi) per sub-block, d per super-block (0 where d == 0)."""
    d = d.astype(np.float64)[:, None]
    safe = np.where(d == 0, 1.0, d)
    return np.clip(np.where(d == 0, 0.0, np.rint(x / safe)), lo, hi)


class Q2_K(_KQuant):
    """2-bit, affine, 16 sub-blocks of 16: w = d * sc * q - dmin * mn (code q).

        byte  0-15    scales[16]  byte j: bits 0-3 sc[j], bits 4-7 mn[j] (sub-block j)
        byte  16-79   qs[64]      in two halves of 32 bytes: byte 16 + 32 h + l holds weights
                                  128 h + l, +32, +64, +96 at bits 0-1, 2-3, 4-5, 6-7
        byte  80-81   d           float16
        byte  82-83   dmin        float16
    """
    name, type_size, bits, group_size, form, sc_max = "Q2_K", 84, 2, 16, "affine", 15

    def _unpack(self, b):
        scales = b[:, 0:16]
        return dict(codes=_unpack_fields(b[:, 16:80], 2, 32), d=_f16(b[:, 80:82]),
                    dmin=_f16(b[:, 82:84]), sc=scales & np.uint8(15), mn=scales >> np.uint8(4))

    def _pack(self, dec, n):
        self._check_sub(dec, n)
        scales = dec.sc.astype(np.uint8) | (dec.mn.astype(np.uint8) << np.uint8(4))
        return np.concatenate([scales, _pack_fields(dec.codes, 2, 32), _f16_bytes(dec.d),
                               _f16_bytes(dec.dmin)], axis=1)


class Q3_K(_KQuant):
    """3-bit, symmetric, 16 sub-blocks of 16: w = d * sc * (q - 4), code q = low 2 bits |
    high bit << 2 (llama.cpp reads the high bit as "subtract 4 if clear"; the same number).

        byte  0-31    hmask[32]   byte l, bit b: bit 2 of weight 32 b + l
        byte  32-95   qs[64]      bits 0-1 of the codes, laid out as Q2_K's qs
        byte  96-107  scales[12]  16 six-bit values s, sc = s - 32:
                                  byte j (0-7):   bits 0-3 low bits of s[j], 4-7 of s[j + 8]
                                  byte 8 + j:     bits 2i..2i+1 = bits 4-5 of s[4 i + j]
        byte  108-109 d           float16
    """
    name, type_size, bits, group_size, form, zero = "Q3_K", 110, 3, 16, "symmetric", 4
    sc_max = 32

    def _unpack(self, b):
        codes = _unpack_fields(b[:, 32:96], 2, 32) | (_unpack_fields(b[:, 0:32], 1, 32) << 2)
        s = _unpack_fields(b[:, 96:104], 4, 8) | (_unpack_fields(b[:, 104:108], 2, 4) << 4)
        return dict(codes=codes, d=_f16(b[:, 108:110]),
                    sc=(s.astype(np.int8) - np.int8(32)))

    def _pack(self, dec, n):
        self._check_sub(dec, n)
        c = dec.codes.astype(np.uint8)
        s = (dec.sc.astype(np.int16) + 32).astype(np.uint8)
        return np.concatenate([_pack_fields(c >> np.uint8(2), 1, 32),
                               _pack_fields(c & np.uint8(3), 2, 32),
                               _pack_fields(s & np.uint8(15), 4, 8),
                               _pack_fields(s >> np.uint8(4), 2, 4),
                               _f16_bytes(dec.d)], axis=1)


class Q4_K(_KQuant):
    """4-bit, affine, 8 sub-blocks of 32: w = d * sc * q - dmin * mn (code q).

        byte  0-1     d           float16
        byte  2-3     dmin        float16
        byte  4-15    scales[12]  8 six-bit sc and 8 six-bit mn (``_unpack_scale_min_k4``)
        byte  16-143  qs[128]     in four runs of 32 bytes: byte 16 + 32 c + l holds weight
                                  64 c + l (bits 0-3) and 64 c + 32 + l (bits 4-7)
    """
    name, type_size, bits, group_size, form = "Q4_K", 144, 4, 32, "affine"

    def _unpack(self, b):
        sc, mn = _unpack_scale_min_k4(b[:, 4:16])
        return dict(codes=_unpack_fields(b[:, 16:144], 4, 32), d=_f16(b[:, 0:2]),
                    dmin=_f16(b[:, 2:4]), sc=sc, mn=mn)

    def _pack(self, dec, n):
        self._check_sub(dec, n)
        return np.concatenate([_f16_bytes(dec.d), _f16_bytes(dec.dmin),
                               _pack_scale_min_k4(dec.sc, dec.mn),
                               _pack_fields(dec.codes, 4, 32)], axis=1)


class Q5_K(_KQuant):
    """5-bit, affine, 8 sub-blocks of 32: w = d * sc * q - dmin * mn, code q = low nibble |
    high bit << 4.

        byte  0-1     d           float16
        byte  2-3     dmin        float16
        byte  4-15    scales[12]  as Q4_K
        byte  16-47   qh[32]      byte l, bit b: bit 4 of weight 32 b + l
        byte  48-175  qs[128]     low nibbles, laid out as Q4_K's qs
    """
    name, type_size, bits, group_size, form = "Q5_K", 176, 5, 32, "affine"

    def _unpack(self, b):
        sc, mn = _unpack_scale_min_k4(b[:, 4:16])
        codes = _unpack_fields(b[:, 48:176], 4, 32) | (_unpack_fields(b[:, 16:48], 1, 32) << 4)
        return dict(codes=codes, d=_f16(b[:, 0:2]), dmin=_f16(b[:, 2:4]), sc=sc, mn=mn)

    def _pack(self, dec, n):
        self._check_sub(dec, n)
        c = dec.codes.astype(np.uint8)
        return np.concatenate([_f16_bytes(dec.d), _f16_bytes(dec.dmin),
                               _pack_scale_min_k4(dec.sc, dec.mn),
                               _pack_fields(c >> np.uint8(4), 1, 32),
                               _pack_fields(c & np.uint8(15), 4, 32)], axis=1)


class Q6_K(_KQuant):
    """6-bit, symmetric, 16 sub-blocks of 16: w = d * sc * (q - 32), code q = low nibble |
    high 2 bits << 4, sc int8.

        byte  0-127   ql[128]     in two runs of 64 bytes: byte 64 h + l holds bits 0-3 of
                                  weight 128 h + l (bits 0-3) and of 128 h + 64 + l (bits 4-7)
        byte  128-191 qh[64]      bits 4-5 of the codes, laid out as Q2_K's qs
        byte  192-207 scales[16]  int8 sc per sub-block
        byte  208-209 d           float16
    """
    name, type_size, bits, group_size, form, zero = "Q6_K", 210, 6, 16, "symmetric", 32
    sc_max = 128

    def _unpack(self, b):
        codes = _unpack_fields(b[:, 0:128], 4, 64) | (_unpack_fields(b[:, 128:192], 2, 32) << 4)
        return dict(codes=codes, d=_f16(b[:, 208:210]), sc=b[:, 192:208].view(np.int8).copy())

    def _pack(self, dec, n):
        self._check_sub(dec, n)
        c = dec.codes.astype(np.uint8)
        return np.concatenate([_pack_fields(c & np.uint8(15), 4, 64),
                               _pack_fields(c >> np.uint8(4), 2, 32),
                               dec.sc.astype(np.int8).view(np.uint8), _f16_bytes(dec.d)],
                              axis=1)


# ---------------------------------------------------------------------------------------------
# Registry and whole tensors
# ---------------------------------------------------------------------------------------------

BLOCK_TYPES = {bt.name: bt for bt in (F32(), F16(), BF16(), Q8_0(), Q4_0(), Q4_1(), Q5_0(),
                                      Q5_1(), Q2_K(), Q3_K(), Q4_K(), Q5_K(), Q6_K(), TQ1_0(),
                                      TQ2_0())}


def get(name) -> BlockType:
    """The block type called ``name`` ("Q4_K"; a gguf GGMLQuantizationType also works);
    ValueError for any other GGML type (IQ*, MXFP4, Q8_1, Q8_K, ...)."""
    name = getattr(name, "name", name)
    bt = BLOCK_TYPES.get(str(name).upper())
    if bt is None:
        raise ValueError(f"tensor type {name} is not supported "
                         f"(tmac reads {', '.join(BLOCK_TYPES)})")
    return bt


def _matrix_shape(bt, shape):
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    if not shape or min(shape) < 0:
        raise ValueError(f"{bt.name}: invalid tensor shape {shape}")
    if shape[-1] % bt.block_size:
        raise ValueError(f"{bt.name} tensor of shape {shape}: the row length K = {shape[-1]} "
                         f"is not a multiple of the block size {bt.block_size}")
    return shape


def decode_matrix(type_name, raw, shape) -> Decoded:
    """A tensor's bytes -> Decoded with codes (M, K) (float types: values (M, K), codes
    (M, 0)), d/m/dmin (M, K // block_size) and sc/mn (M, K // group_size). ``shape`` is the
    numpy shape (the GGUF tensor's ggml shape reversed); a 1-D shape (K,) keeps one dimension.
    ValueError if K is not a multiple of the block size or the byte count is wrong."""
    bt = get(type_name)
    shape = _matrix_shape(bt, shape)
    lead, k = shape[:-1], shape[-1]
    n_blocks = int(np.prod(shape, dtype=np.int64)) // bt.block_size
    raw = np.asarray(raw)
    n_bytes = raw.size * raw.itemsize
    if n_bytes != n_blocks * bt.type_size:
        raise ValueError(f"{bt.name} tensor of shape {shape} needs {n_blocks * bt.type_size} "
                         f"bytes ({n_blocks} blocks of {bt.type_size}), got {n_bytes}")
    dec = bt.decode(raw)
    per_block = lead + (k // bt.block_size,)
    fields = {}
    for f in ("d", "m", "dmin", "values"):
        a = getattr(dec, f)
        fields[f] = None if a is None else a.reshape(per_block)
    for f in ("sc", "mn"):
        a = getattr(dec, f)
        fields[f] = None if a is None else a.reshape(lead + (k // bt.group_size,))
    codes = dec.codes.reshape(lead + ((0,) if bt.form == "float" else (k,)))
    return Decoded(bt.name, codes, **fields)


def encode_matrix(type_name, decoded) -> np.ndarray:
    """The inverse of ``decode_matrix``: -> raw (M, K // block_size * type_size) uint8."""
    bt = get(type_name)
    if decoded.name != bt.name:
        raise ValueError(f"encode_matrix: {type_name} given for a Decoded of type {decoded.name}")
    if bt.form == "float":
        values = np.asarray(decoded.values)
        lead, k = values.shape[:-1], values.shape[-1]
        n_blocks = values.size
        flat = Decoded(bt.name, np.empty((n_blocks, 0), np.uint8), values=values.reshape(-1))
    else:
        lead, k = decoded.codes.shape[:-1], decoded.codes.shape[-1]
        if k % bt.block_size:
            raise ValueError(f"{bt.name}: the row length K = {k} is not a multiple of the "
                             f"block size {bt.block_size}")
        n_blocks = decoded.codes.size // bt.block_size
        n_sub = bt.block_size // bt.group_size

        def blocks(a, per):
            return None if a is None else np.asarray(a).reshape((n_blocks,) + per)
        flat = Decoded(bt.name, decoded.codes.reshape(n_blocks, bt.block_size),
                       d=blocks(decoded.d, ()), m=blocks(decoded.m, ()),
                       dmin=blocks(decoded.dmin, ()), sc=blocks(decoded.sc, (n_sub,)),
                       mn=blocks(decoded.mn, (n_sub,)))
    return bt.encode(flat).reshape(lead + (k // bt.block_size * bt.type_size,))


def check_finite(decoded, where):
    """ValueError naming ``where`` if any float16 scale d, dmin or m is NaN or Inf (the values
    of float types are not checked: they are weights, not scales)."""
    for f in ("d", "dmin", "m"):
        a = getattr(decoded, f)
        if a is None:
            continue
        bad = ~np.isfinite(np.asarray(a, dtype=np.float32))
        if bad.any():
            first = np.unravel_index(int(np.argmax(bad)), bad.shape)
            raise ValueError(f"{where}: {decoded.name} block parameter {f} is NaN or Inf in "
                             f"{int(bad.sum())} block(s) (first at block index "
                             f"{tuple(int(i) for i in first)})")
