"""Weights at their real size on disk: codes as b bit planes, group parameters in the narrowest
dtype that holds them exactly. The storage forms of ``tmac.save`` (tmac.weightfile) and of the
prepared-model cache (tmac.model.store); numpy only, below every layer that stores weights.

Not the kernel layout (tmac.layout), which is rebuilt on load: a kernel layout change never
meets a stale file.
"""
from __future__ import annotations

import numpy as np


def pack_codes(codes, bits):
    """(M, K) uint8 codes -> (bits, M, ceil(K / 8)) uint8: bit plane i, packed 8 per byte."""
    return np.stack([np.packbits((codes >> i) & 1, axis=1) for i in range(bits)])


def unpack_codes(planes, k):
    """Inverse of pack_codes: (bits, M, ceil(K / 8)) uint8 -> (M, K) uint8."""
    codes = np.zeros((planes.shape[1], k), np.uint8)
    for i, plane in enumerate(planes):
        codes |= np.unpackbits(plane, axis=1, count=k) << np.uint8(i)
    return codes


def narrowest(a):
    """``a`` (float32) in the narrowest dtype that holds every value exactly: uint8 integers,
    float16, or float32 itself."""
    a = np.asarray(a, np.float32)
    if np.all((a >= 0) & (a <= 255) & (a == np.rint(a))) and not np.signbit(a).any():
        return a.astype(np.uint8)
    half = a.astype(np.float16)
    if np.array_equal(half.astype(np.float32), a):
        return half
    return a
