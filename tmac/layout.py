"""Packing b-bit weight codes into the kernel layout (pure numpy; runs once per weight).

The layout depends only on (M, K, bits): never on the ISA, the thread count or any tuned knob,
so a weight packed once works on every kernel path. docs/layout.md draws it.

Shape of the packed array: ``(Mt, U, bits, 2, 64)`` uint8 with

* ``Mt = ceil(M / 64)`` row tiles of 64 rows (rows past M are code 0),
* ``U = ceil(Kp / 16)`` K units of 16 columns = 4 table groups (columns past K are code 0;
  the kernels give them zero activations, so they contribute nothing),
* ``bits`` planes, then 2 halves of 32 rows, then 64 bytes = one 512-bit register.

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


class PackedCodes(NamedTuple):
    """Weight codes in the kernel layout.

    data     (Mt, U, bits, 2, 64) uint8, C-contiguous (see module docstring)
    m, k     the logical shape of the codes
    bits     code width, 1..4
    scales_t (Mt, n_weight_groups, 64) float32 or None: scales transposed so that 64 rows of
             one weight group are contiguous (vector loads in the epilogue); 0 for padded rows
    offsets_t same shape: float32((2^bits - 1) / 2) - zeros, the epilogue's zero-point term
    zeros_t   same shape: the zeros themselves (the dequant baseline needs them exactly)
    zeros_u8  same shape, uint8: the zeros again when every one is an integer in 0..255 (GPTQ,
             symmetric, ternary: the usual case), else None. The AVX-512 kernel then reads one
             byte per row and group instead of a 4-byte offset and forms the offset itself
             (``float32((2^b - 1)/2) - float32(zero)``, the same single subtraction, same bits):
             0.375 bit less traffic per weight at group size 128.
    """

    data: np.ndarray
    m: int
    k: int
    bits: int
    scales_t: Optional[np.ndarray] = None
    offsets_t: Optional[np.ndarray] = None
    zeros_t: Optional[np.ndarray] = None
    zeros_u8: Optional[np.ndarray] = None

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


def padded_shape(m: int, k: int) -> tuple[int, int]:
    """(rows, columns) after padding: M to a multiple of 64, K to a multiple of 16."""
    return -(-m // ROW_TILE) * ROW_TILE, max(1, -(-k // UNIT_K)) * UNIT_K


def pack(codes, bits: int, scales=None, zeros=None) -> PackedCodes:
    """codes (M, K) uint8 in [0, 2^bits) -> PackedCodes.

    Pass ``scales``/``zeros`` ((M, K // group_size) float32) to also store them transposed for
    the kernels; otherwise ``tmac.kernels.lut_matmul`` transposes them on every call.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.dtype != np.uint8:
        raise ValueError(f"codes must be a 2-D uint8 array, got {codes.dtype} {codes.shape}")
    if not 1 <= bits <= 4:
        raise ValueError(f"bits must be in 1..4, got {bits}")
    if codes.size and int(codes.max()) >= 1 << bits:
        raise ValueError(f"codes exceed {bits} bits")
    m, k = codes.shape
    mp, kpp = padded_shape(m, k)
    padded = np.zeros((mp, kpp), np.uint8)
    padded[:m, :k] = codes
    # idx[i, m, g] = sum_t bit_i(codes[m, 4g + t]) << t
    quads = padded.reshape(mp, kpp // 4, 4)
    idx = np.stack([((quads >> i) & 1) @ np.array([1, 2, 4, 8], np.uint8) for i in range(bits)])
    idx = idx.astype(np.uint8)                                  # (bits, Mp, G)
    mt, units = mp // ROW_TILE, kpp // UNIT_K
    # rows 64R + 32s + 16h + r, groups 4u + q  ->  [R, u, i, s, r, q, h]
    idx = idx.reshape(bits, mt, 2, 2, 16, units, 4).transpose(1, 5, 0, 2, 4, 6, 3)
    data = np.ascontiguousarray((idx[..., 0] | (idx[..., 1] << 4)).reshape(mt, units, bits, 2, 64))
    packed = PackedCodes(data, m, k, bits)
    if scales is not None:
        scales_t, offsets_t = pack_scales(scales, zeros, bits)
        zeros_t = transpose_rows(zeros)
        packed = packed._replace(scales_t=scales_t, offsets_t=offsets_t, zeros_t=zeros_t,
                                 zeros_u8=small_integer_zeros(zeros_t))
    return packed


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


def pack_scales(scales, zeros, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """scales, zeros (M, G) float32 -> (scales_t, offsets_t), each (Mt, G, 64) float32.

    offsets_t = float32((2^bits - 1) / 2) - zeros, exactly the contract's ``offset``
    (one float32 subtraction, so precomputing it changes no bit). Padded rows hold 0.
    """
    scales = np.asarray(scales, np.float32)
    zeros = np.asarray(zeros, np.float32)
    m, ng = scales.shape
    mp = -(-m // ROW_TILE) * ROW_TILE
    offsets = np.float32((2**bits - 1) / 2) - zeros
    return transpose_rows(scales), transpose_rows(offsets)


def small_integer_zeros(zeros_t) -> Optional[np.ndarray]:
    """Transposed zeros as uint8 if every one is an integer in 0..255 (exactly), else None.

    (-0.0 becomes 0: ``c - 0.0`` and ``c - (-0.0)`` are the same float for c > 0.)"""
    z = np.asarray(zeros_t, np.float32)
    if not np.all((z >= 0) & (z <= 255) & (z == np.rint(z))):   # NaN fails every test
        return None
    return np.ascontiguousarray(z.astype(np.uint8))


def transpose_rows(a) -> np.ndarray:
    """(M, G) float32 -> (Mt, G, 64) float32: 64 rows of one group contiguous, 0 past M."""
    a = np.asarray(a, np.float32)
    m, ng = a.shape
    mp = -(-m // ROW_TILE) * ROW_TILE
    t = np.zeros((mp, ng), np.float32)
    t[:m] = a
    return np.ascontiguousarray(t.reshape(mp // ROW_TILE, ROW_TILE, ng).transpose(0, 2, 1))
