"""Packing b-bit weight codes into the kernel layout (pure numpy; runs once per weight).

The layout depends only on (M, K, bits): never on the ISA, the thread count or any tuned knob,
so a weight packed once works on every kernel path. docs/layout.md draws it.

Shape of the packed array: ``(Mt, U, bits, 2, 64)`` uint8 with

* ``Mt = ceil(M / 64)`` row tiles of 64 rows (rows past M are code 0),
* ``U = ceil(Kp / 16)`` K units of 16 columns = 4 table groups (columns past K are code 0;
  the kernels give them zero activations, so they contribute nothing),
* ``bits`` planes (1 to 8), then 2 halves of 32 rows, then 64 bytes = one 512-bit register:
  a code of b bits takes exactly b bits.

Byte ``data[R, u, i, s, 4*r + q]`` (r in 0..15, q in 0..3) holds, for plane i and table group
``g = 4*u + q``::

    low nibble  = idx_i(row 64*R + 32*s + r,      g)
    high nibble = idx_i(row 64*R + 32*s + 16 + r, g)

where ``idx_i(m, g) = sum_t bit_i(codes[m, 4g + t]) << t`` (docs/numerics.md). Every 32-bit lane
of a register thus holds one row's 4 table indices for 4 consecutive groups, which is what
``vpermb`` (table of 4 groups in one register) + ``vpdpbusd`` (sum of 4 bytes per lane) need.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

ROW_TILE = 64      # rows per packed row tile
HALF_ROWS = 32     # rows per 64-byte register (16 in the low nibbles, 16 in the high ones)
UNIT_K = 16        # K columns per unit: 4 table groups of g = 4


FORMS = ("zero_point", "affine")


class PackedCodes(NamedTuple):
    """Weight codes and group parameters in the kernel layout: what the kernels read, once.

    data     (Mt, U, bits, 2, 64) uint8, C-contiguous (see module docstring): b bits per code
    m, k     the logical shape of the codes
    bits     code width, 1..8
    scales_t (Mt, n_weight_groups, 64) or None: the scales transposed so that 64 rows of one
             weight group are contiguous (vector loads in the epilogue); 0 for padded rows
    zeros_t  same shape, the second group parameter, in one of two forms (tmac.kernels.epilogue):
             zero-point form, w = (code - zero) * scale: scales_t float32, zeros_t the zeros,
                 uint8 when every one is an integer in 0..255 (GPTQ, symmetric, ternary: the
                 usual case; a quarter of the bytes) else float32. The kernels form the offset
                 ``float32((2^b - 1)/2) - zero`` themselves, the contract's single subtraction.
             affine form, w = scale * code + offset: scales_t and zeros_t (the offsets) are
                 float16, stored as their uint16 bit patterns (Numba has no float16 arrays).
    """

    data: np.ndarray
    m: int
    k: int
    bits: int
    scales_t: Optional[np.ndarray] = None
    zeros_t: Optional[np.ndarray] = None

    @property
    def k_padded(self) -> int:
        """K rounded up to a multiple of 4 (the contract's Kp)."""
        return -(-self.k // 4) * 4

    @property
    def n_units(self) -> int:
        return self.data.shape[1]

    @property
    def m_padded(self) -> int:
        return self.data.shape[0] * ROW_TILE

    @property
    def form(self) -> str:
        """The parameter form (tmac.kernels.epilogue): "zero_point", "fixed_zero", "affine",
        "two_level" or "two_level_affine"."""
        sc, off = self.scales_t, self.zeros_t
        if isinstance(sc, tuple):
            return "two_level_affine" if isinstance(off, tuple) else "two_level"
        if sc is not None and sc.dtype == np.uint16:
            return "fixed_zero" if np.ndim(off) == 0 else "affine"
        return "zero_point"

    @property
    def n_weight_groups(self) -> int:
        """Weight groups per row of the carried parameters."""
        sc = self.scales_t
        return (sc[1] if isinstance(sc, tuple) else sc).shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes the kernels read: codes and group parameters."""
        arrays = [self.data]
        for part in (self.scales_t, self.zeros_t):
            arrays += list(part) if isinstance(part, tuple) else [part]
        return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


def padded_shape(m: int, k: int) -> tuple[int, int]:
    """(rows, columns) after padding: M to a multiple of 64, K to a multiple of 16."""
    return -(-m // ROW_TILE) * ROW_TILE, max(1, -(-k // UNIT_K)) * UNIT_K


def pack(codes, bits: int, scales=None, zeros=None, form: str = "zero_point") -> PackedCodes:
    """codes (M, K) uint8 in [0, 2^bits) -> PackedCodes.

    Pass ``scales``/``zeros`` ((M, K // group_size) float32; for the affine form the offsets,
    float16 values) to also store them in the kernel layout; otherwise the kernels' callers
    transpose them on every call (tmac.kernels.lut.transposed_scales).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.dtype != np.uint8:
        raise ValueError(f"codes must be a 2-D uint8 array, got {codes.dtype} {codes.shape}")
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    if codes.size and int(codes.max()) >= 1 << bits:
        raise ValueError(f"codes exceed {bits} bits")
    m, k = codes.shape
    mp, kpp = padded_shape(m, k)
    padded = np.zeros((mp, kpp), np.uint8)
    padded[:m, :k] = codes
    # idx[i, m, g] = sum_t bit_i(codes[m, 4g + t]) << t
    quads = padded.reshape(mp, kpp // 4, 4)
    idx = np.stack([_nibble((quads >> i) & 1) for i in range(bits)])      # (bits, Mp, G) uint8
    mt, units = mp // ROW_TILE, kpp // UNIT_K
    # rows 64R + 32s + 16h + r, groups 4u + q  ->  [R, u, i, s, r, q, h]
    idx = idx.reshape(bits, mt, 2, 2, 16, units, 4).transpose(1, 5, 0, 2, 4, 6, 3)
    data = np.ascontiguousarray((idx[..., 0] | (idx[..., 1] << 4)).reshape(mt, units, bits, 2, 64))
    packed = PackedCodes(data, m, k, bits)
    if scales is not None:
        packed = packed._replace(**dict(zip(("scales_t", "zeros_t"),
                                            pack_params(scales, zeros, form))))
    return packed


def _nibble(bits4):
    """(..., 4) 0/1 uint8 -> (...,) uint8: bit t of the result is bits4[..., t]."""
    return bits4[..., 0] | (bits4[..., 1] << 1) | (bits4[..., 2] << 2) | (bits4[..., 3] << 3)


def pack_params(scales, zeros, form: str = "zero_point") -> tuple:
    """(scales_t, zeros_t) in the kernel layout and storage dtype of ``form`` (see PackedCodes)."""
    if form == "affine":
        return tuple(float16_bits(transpose_rows(a), name) for name, a in (("scales", scales),
                                                                           ("offsets", zeros)))
    if form != "zero_point":
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    zeros_t = transpose_rows(zeros)
    small = small_integer_zeros(zeros_t)
    return transpose_rows(scales), zeros_t if small is None else small


def float16_bits(a, name="values") -> np.ndarray:
    """float32 values that are float16 numbers -> their uint16 bit patterns (exact, checked)."""
    a = np.asarray(a, np.float32)
    half = a.astype(np.float16)
    if not np.array_equal(half.astype(np.float32), a):
        raise ValueError(f"{name} must be float16 values (they are stored as float16)")
    return np.ascontiguousarray(half.view(np.uint16))


def untranspose_rows(t, m: int) -> np.ndarray:
    """Inverse of transpose_rows: (Mt, G, 64) -> (M, G)."""
    mt, ng, _ = t.shape
    return np.ascontiguousarray(t.transpose(0, 2, 1).reshape(mt * ROW_TILE, ng)[:m])


def pack_fixed_zero(scales, zero) -> tuple:
    """(scales_t, zeros_t) of the fixed-zero form: float16 scales (M, G) as bits, and the zero
    point every group shares, a float32 scalar (llama.cpp's Q4_0, Q5_0, Q8_0, TQ1_0, TQ2_0)."""
    return float16_bits(transpose_rows(scales), "scales"), np.float32(zero)


def pack_two_level(d, sc, second) -> tuple:
    """(scales_t, zeros_t) of the two-level form (llama.cpp's K-quants): the group scale is
    d * sc, d float16 per super-block (M, S), sc a small integer per group (M, G) (int8 or
    uint8); ``second`` is (dmin (M, S), mn (M, G) uint8), giving offsets -(dmin * mn), or the
    fixed zero point (int). Every product is exact in float32."""
    sc = np.asarray(sc)
    scales_t = (float16_bits(transpose_rows(d), "d"), transpose_rows(sc, sc.dtype))
    if isinstance(second, tuple):
        dmin, mn = second
        return scales_t, (float16_bits(transpose_rows(dmin), "dmin"), transpose_rows(mn, np.uint8))
    return scales_t, np.float32(second)


def _widen(a):
    return a.view(np.float16).astype(np.float32) if a.dtype == np.uint16 else a.astype(np.float32)


def _per_group(t, m, groups):
    """A transposed parameter array back to (M, groups) float32, super-block arrays repeated."""
    a = _widen(untranspose_rows(t, m))
    return np.repeat(a, groups // a.shape[1], axis=1)


def params_from(packed: PackedCodes) -> tuple:
    """(scales, zeros) as (M, G) float32 from a PackedCodes that carries them, exactly: the
    effective scale of every group (d * sc for the two-level form) and its zero point (the
    fixed zero repeated) or, for the affine forms, its offset (-(dmin * mn) two-level)."""
    sc, off = packed.scales_t, packed.zeros_t
    if isinstance(sc, tuple):
        groups = sc[1].shape[1]
        scales = (_per_group(sc[0], packed.m, groups) * _per_group(sc[1], packed.m, groups))
    else:
        groups = sc.shape[1]
        scales = _widen(untranspose_rows(sc, packed.m))
    if isinstance(off, tuple):
        zeros = -(_per_group(off[0], packed.m, groups) * _per_group(off[1], packed.m, groups))
    elif np.ndim(off) == 0:
        zeros = np.full((packed.m, groups), off, np.float32)
    else:
        zeros = _widen(untranspose_rows(off, packed.m))
    return scales.astype(np.float32), zeros.astype(np.float32)


def unpack(packed: PackedCodes) -> np.ndarray:
    """Inverse of :func:`pack`: PackedCodes -> codes (M, K) uint8."""
    data = packed.data
    mt, units, bits = data.shape[:3]
    nib = np.stack([data & 15, data >> 4], axis=-1)              # [R, u, i, s, 64, h]
    nib = nib.reshape(mt, units, bits, 2, 16, 4, 2).transpose(2, 0, 3, 6, 4, 1, 5)
    idx = nib.reshape(bits, mt * ROW_TILE, units * 4)            # (bits, Mp, G)
    codes = np.zeros((mt * ROW_TILE, units * UNIT_K), np.uint8)
    for i in range(bits):
        for t in range(4):
            codes[:, t::4] |= ((idx[i] >> t) & 1) << i
    return codes[:packed.m, :packed.k]


def small_integer_zeros(zeros_t) -> Optional[np.ndarray]:
    """Transposed zeros as uint8 if every one is an integer in 0..255 (exactly), else None.

    (-0.0 becomes 0: ``c - 0.0`` and ``c - (-0.0)`` are the same float for c > 0.)"""
    z = np.asarray(zeros_t, np.float32)
    if not np.all((z >= 0) & (z <= 255) & (z == np.rint(z))):   # NaN fails every test
        return None
    return np.ascontiguousarray(z.astype(np.uint8))


def transpose_rows(a, dtype=np.float32) -> np.ndarray:
    """(M, G) -> (Mt, G, 64) of ``dtype``: 64 rows of one group contiguous, 0 past M."""
    a = np.asarray(a, dtype)
    m, ng = a.shape
    mp = -(-m // ROW_TILE) * ROW_TILE
    t = np.zeros((mp, ng), dtype)
    t[:m] = a
    return np.ascontiguousarray(t.reshape(mp // ROW_TILE, ROW_TILE, ng).transpose(0, 2, 1))
