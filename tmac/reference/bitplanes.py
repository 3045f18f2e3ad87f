"""Bit planes: a b-bit code is the sum of b one-bit planes, code = sum_i 2^i * plane_i.

T-MAC reads each bit as a sign, s_i = 2 * bit_i - 1 in {-1, +1}, which turns the code into

    code = sum_i 2^(i-1) * s_i + (2^b - 1) / 2

so a plane contributes with weight 2^(i-1) (1/2, 1, 2, 4) and a constant (2^b - 1) / 2 is left
over; ``tmac.reference.lut_matmul`` moves that constant into the zero-point term.
"""

import numpy as np


def split(codes, bits):
    """codes (..., K) uint8 -> planes (bits, ..., K) uint8 of 0/1; plane i is bit i."""
    return np.stack([(codes >> i) & 1 for i in range(bits)]).astype(np.uint8)


def combine(planes):
    """planes (bits, ..., K) of 0/1 -> codes (..., K) uint8: sum_i 2^i * plane_i."""
    codes = np.zeros(planes.shape[1:], dtype=np.uint8)
    for i, plane in enumerate(planes):
        codes |= (plane.astype(np.uint8) << i).astype(np.uint8)
    return codes


def signs(planes):
    """0/1 planes -> +-1 signs (int8): s = 2 * bit - 1."""
    return (2 * planes.astype(np.int8) - 1).astype(np.int8)


def group_indices(planes):
    """Table indices: planes (bits, M, Kp) -> (bits, M, Kp // 4) uint8.

    Index bit t comes from column 4g + t: idx = sum_t plane[..., 4g + t] << t, so the
    index selects the table entry whose signs match the 4 weight bits of group g.
    """
    b, m, kp = planes.shape
    quads = planes.reshape(b, m, kp // 4, 4).astype(np.uint8)
    return (quads[..., 0] | quads[..., 1] << 1 | quads[..., 2] << 2 | quads[..., 3] << 3).astype(np.uint8)
