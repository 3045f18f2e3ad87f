"""LUT matrix multiplication: lookup, shift-accumulate, then scales and zero points.

For a row of codes with scale s and zero z in a block of K, with planes read as signs
(see ``bitplanes``), the dot product with the activations x is

    sum_k s * (code_k - z) * x_k
      = s * ( sum_i 2^(i-1) * sum_g T_g[idx_i(g)]  +  ((2^b - 1)/2 - z) * sum_k x_k )
              \\_____________ lut ______________/     \\______ offset ______/ \\ xsum /

so each plane costs one table lookup per 4 activations, planes are combined with the weights
1/2, 1, 2, 4 (shift-accumulate), and scales and zero points enter once per block, last.

Blocks. K is padded to Kp (a multiple of 4) with zero activations. A block is the largest run
of K that lies inside one weight group (width W) and one activation group (width A, the unit
of table quantization): B = min(A, W). The float epilogue runs once per block.

Two table modes:
  "int8"    tables quantized per activation group (``tables.quantize_tables``); the integer sum
            P = sum_i 2^i * sum_g qT_g[idx_i(g)] is exact, then lut = float32(P) * (scale * 0.5).
  "float32" tables used as built; per plane F_i = sum_g T_g[idx_i(g)] from 0.0 in increasing g,
            then lut = 0.0 + F_0 * 0.5 + F_1 * 1 + F_2 * 2 + F_3 * 4, added left to right.

Epilogue, per row m and block b (weight group wg, float32, no fused multiply-add):
    block = lut + offset[m, wg] * xsum[b],     offset = float32((2^b - 1) / 2) - zero
    y     = 0.0, then y = y + scale[m, wg] * block for b = 0, 1, ... in order

docs/numerics.md states the same contract for kernel and port writers.
"""

from dataclasses import dataclass

import numpy as np

from . import bitplanes, tables

LUT_MODES = ("int8", "float32")


@dataclass(frozen=True)
class Blocks:
    """How padded K splits into blocks. ``start``/``stop`` index K; ``weight_group``,
    ``act_group`` say which group each block belongs to. All arrays have one entry per block."""

    k_padded: int
    width: int
    start: np.ndarray
    stop: np.ndarray
    weight_group: np.ndarray
    act_group: np.ndarray


def padded_k(k):
    """K rounded up to a multiple of 4 (the table group size g)."""
    return -(-k // 4) * 4


def make_blocks(k, group_size, act_group_size):
    """Blocks for K columns, weight groups of ``group_size`` and activation groups of ``act_group_size``.

    A whole-row weight group (group_size == K) spans the padded row. ``act_group_size`` is a
    multiple of 4; any value >= Kp means one activation group per row.
    """
    kp = padded_k(k)
    w_eff = kp if group_size >= k else group_size
    a_eff = min(act_group_size, kp)
    width, wider = min(w_eff, a_eff), max(w_eff, a_eff)
    if wider % width and wider != kp:
        raise ValueError(f"act_group_size {act_group_size} and group_size {group_size} do not nest: "
                         "the larger must be a multiple of the smaller, or the whole row")
    start = np.arange(0, kp, width)
    stop = np.minimum(start + width, kp)
    return Blocks(kp, width, start, stop, start // w_eff, start // a_eff)


def pad_columns(a, k_padded):
    """Append zero columns to a 2-D array up to k_padded columns."""
    return np.pad(a, ((0, 0), (0, k_padded - a.shape[1])))


def sequential_sum(terms, axis=-1):
    """Left-to-right float32 sum starting at 0.0 (numpy's own sum is pairwise; kernels are not)."""
    moved = np.moveaxis(terms, axis, 0)
    total = np.zeros(moved.shape[1:], dtype=np.float32)
    for term in moved:
        total = total + term
    return total


def table_indices(codes, bits, k_padded):
    """codes (M, K) -> (bits, M, Kp // 4) uint8: per plane, the 4 weight bits of each 4-group."""
    return bitplanes.group_indices(bitplanes.split(pad_columns(codes, k_padded), bits))


def lookup(table_set, indices):
    """table_set (G, 16), indices (bits, M, G) -> looked-up entries (bits, M, G)."""
    return table_set[np.arange(table_set.shape[0]), indices]


def plane_sums(qtables, indices, blocks):
    """Per-plane integer sums: qtables (N, G, 16) int8 -> (N, bits, M, nblocks) int32."""
    quad_start = blocks.start // 4
    return np.stack([np.add.reduceat(lookup(t, indices).astype(np.int32), quad_start, axis=-1)
                     for t in qtables])


def integer_sums(plane_sums_):
    """Shift-accumulate: P = sum_i 2^i * S_i. (N, bits, M, nblocks) -> (N, M, nblocks) int32."""
    weights = (1 << np.arange(plane_sums_.shape[1], dtype=np.int32))[None, :, None, None]
    return (plane_sums_ * weights).sum(axis=1, dtype=np.int32)


def lut_from_int8(sums, table_scales, blocks):
    """lut = float32(P) * (scale * 0.5). sums (N, M, nblocks) int32 -> float32."""
    half_scale = table_scales[:, blocks.act_group] * np.float32(0.5)          # (N, nblocks)
    return sums.astype(np.float32) * half_scale[:, None, :]


def lut_from_float(table_set, indices, blocks):
    """Float tables: per plane a left-to-right sum over each block's 4-groups, then planes
    combined as 0.0 + F_0*0.5 + F_1*1 + F_2*2 + F_3*4. (G, 16) -> (M, nblocks) float32."""
    looked_up = lookup(table_set, indices)                                     # (bits, M, G)
    lut = np.zeros(looked_up.shape[1:2] + (len(blocks.start),), dtype=np.float32)
    for b, (lo, hi) in enumerate(zip(blocks.start // 4, blocks.stop // 4)):
        plane_totals = sequential_sum(looked_up[:, :, lo:hi])                 # (bits, M)
        for i, plane_total in enumerate(plane_totals):
            lut[:, b] = lut[:, b] + plane_total * np.float32(2.0 ** (i - 1))
    return lut


def block_sums(x, blocks):
    """xsum (N, nblocks) float32: each block's activations summed left to right from 0.0."""
    return np.stack([sequential_sum(x[:, lo:hi]) for lo, hi in zip(blocks.start, blocks.stop)],
                    axis=1)


def block_values(lut, xsum, scales, zeros, bits, blocks):
    """What each block adds to y: scale * (lut + offset * xsum), (N, M, nblocks) float32."""
    offset = np.float32((2**bits - 1) / 2) - zeros                           # (M, n_weight_groups)
    wg = blocks.weight_group
    return scales[None, :, wg] * (lut + offset[None, :, wg] * xsum[:, None, :])


def epilogue(lut, xsum, scales, zeros, bits, blocks):
    """y (N, M) = sum over blocks of scale * (lut + offset * xsum), from 0.0 in block order."""
    return sequential_sum(block_values(lut, xsum, scales, zeros, bits, blocks))


def lut_and_sums(codes, bits, n_weight_groups, x, act_group_size, lut="int8"):
    """Everything before the epilogue, shared by every format with a LUT path: the blocks, the
    lut term of each block (N, M, nblocks) float32 and the block sums (N, nblocks) float32."""
    m, k = codes.shape
    blocks = make_blocks(k, k // n_weight_groups, act_group_size)
    xp = pad_columns(x, blocks.k_padded)
    indices = table_indices(codes, bits, blocks.k_padded)
    table_set = tables.build_tables_mirrored(xp)
    if lut == "int8":
        qtables, table_scales = tables.quantize_tables(table_set, xp, act_group_size)
        lut_values = lut_from_int8(integer_sums(plane_sums(qtables, indices, blocks)),
                                   table_scales, blocks)
    elif lut == "float32":
        lut_values = np.stack([lut_from_float(t, indices, blocks) for t in table_set])
    else:
        raise ValueError(f"lut must be one of {LUT_MODES}, got {lut!r}")
    return blocks, lut_values, block_sums(xp, blocks)


def lut_matmul(codes, scales, zeros, bits, x, act_group_size, lut="int8"):
    """y = x @ dequantize(codes, scales, zeros).T through table lookup.

    codes (M, K) uint8, scales/zeros (M, K // group_size) float32, x (N, K) float32,
    act_group_size: multiple of 4 (>= K for one group per row). Returns (N, M) float32.
    """
    blocks, lut_values, xsum = lut_and_sums(codes, bits, scales.shape[1], x, act_group_size, lut)
    return epilogue(lut_values, xsum, scales, zeros, bits, blocks)
