"""Lookup tables for groups of g = 4 activations, and their int8 quantization.

For every group of 4 consecutive activations x0..x3, entry j of its 16-entry table is the dot
product of the group with the sign pattern of j (bit t of j set -> +1, clear -> -1):

    T[j] = (((sigma_0(j)*x0 + sigma_1(j)*x1) + sigma_2(j)*x2) + sigma_3(j)*x3) + 0.0  (float32)

A row's 4 weight bits of one plane form an index j, and T[j] replaces 4 multiply-adds.
The final "+ 0.0" turns a negative zero into +0.0 and changes nothing else: tables hold no -0.

Mirror consolidation (T-MAC): flipping every bit of j negates every sign, so T[15 - j] = -T[j].
Only the 8 entries with bit 0 set are computed, the rest are (-T[j]) + 0.0. IEEE rounding is
symmetric, so this is bitwise identical to the plain build. (Without the "+ 0.0" it would not
be: an exact cancellation gives +0.0 on both sides, and negating one of them gives -0.0.)

Table quantization (T-MAC): one symmetric int8 scale per activation group of A activations,
scale = max over the group's 4-groups of (|x0|+|x1|)+|x2|)+|x3|, divided by 127 -- the
largest value any entry can take. Entries are multiplied by 1/scale, rounded half to even and
clipped to [-127, 127], which keeps the mirror property in int8 too.

Shapes: x (N, Kp) float32 with Kp a multiple of 4; tables (N, Kp // 4, 16).
"""

import numpy as np

INDEX_BITS = np.arange(16)[:, None] >> np.arange(4)[None, :] & 1     # (16, 4): bit t of j
SIGNS = (2 * INDEX_BITS - 1).astype(np.float32)                       # (16, 4): sigma_t(j)
MIRROR_HALF = np.arange(1, 16, 2)                                     # the 8 entries computed


def quads(x):
    """x (N, Kp) -> (N, Kp // 4, 4): the groups of 4 consecutive activations."""
    n, kp = x.shape
    return x.reshape(n, kp // 4, 4)


def _signed_sum(groups, signs):
    """(((s0*x0 + s1*x1) + s2*x2) + s3*x3) + 0.0 per sign row; groups (N, G, 4), signs (J, 4)."""
    terms = groups[:, :, None, :] * signs[None, None, :, :]             # (N, G, J, 4), exact
    return (((terms[..., 0] + terms[..., 1]) + terms[..., 2]) + terms[..., 3]) + np.float32(0)


def build_tables(x):
    """All 16 entries computed directly. x (N, Kp) float32 -> (N, Kp // 4, 16) float32."""
    return _signed_sum(quads(x), SIGNS).astype(np.float32)


def build_tables_mirrored(x):
    """Compute the 8 entries with bit 0 set; the rest are T[15 - j] = (-T[j]) + 0.0."""
    half = _signed_sum(quads(x), SIGNS[MIRROR_HALF]).astype(np.float32)  # (N, G, 8)
    tables = np.empty(half.shape[:2] + (16,), dtype=np.float32)
    tables[..., MIRROR_HALF] = half
    tables[..., 15 - MIRROR_HALF] = -half + np.float32(0)
    return tables


def act_group_of_quads(n_quads, act_group_size):
    """Activation group of each 4-group: (n_quads,) int, group a covers [a*A, (a+1)*A)."""
    return (np.arange(n_quads) * 4) // act_group_size


def table_scales(x, act_group_size):
    """One float32 scale per activation group: max_g ((|x0|+|x1|)+|x2|)+|x3| / 127.

    x (N, Kp) float32 -> (N, ceil(Kp / A)) float32. An all-zero group gets scale 0.
    """
    a = np.abs(quads(x))
    absum = ((a[..., 0] + a[..., 1]) + a[..., 2]) + a[..., 3]           # (N, G)
    owner = act_group_of_quads(absum.shape[1], act_group_size)
    n_groups = owner[-1] + 1
    largest = np.stack([absum[:, owner == g].max(axis=1) for g in range(n_groups)], axis=1)
    return (largest / np.float32(127)).astype(np.float32)


def inverse_scales(scales):
    """1 / scale in float32, and 0 where the scale is 0 (so an all-zero group gives zero entries)."""
    safe = np.where(scales > 0, scales, np.float32(1))
    return np.where(scales > 0, np.float32(1) / safe, np.float32(0)).astype(np.float32)


def quantize_tables(tables, x, act_group_size):
    """int8 tables and their scales.

    tables (N, G, 16) float32, x (N, Kp) float32 ->
        qtables (N, G, 16) int8 = clip(rint(T * (1 / scale)), -127, 127)
        scales  (N, n_act_groups) float32
    """
    scales = table_scales(x, act_group_size)
    owner = act_group_of_quads(tables.shape[1], act_group_size)
    inv = inverse_scales(scales)[:, owner, None]                          # (N, G, 1)
    q = np.clip(np.rint(tables * inv), -127, 127)
    return q.astype(np.int8), scales
