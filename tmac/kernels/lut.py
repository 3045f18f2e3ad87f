"""LUT matmul driver: block plan, table build, then the kernel of the chosen ISA path.

    y = lut_matmul(packed, scales, zeros, bits, x, act_group_size, lut, isa, threads)

Steps (all exact per docs/numerics.md):
1. plan():   blocks of K (width min(A, W)), their weight/activation groups, 16-column units;
2. tables:   x padded with zeros to the packed width, mirrored tables, int8 quantization;
3. sums:     xsum per block (left to right), half = table scale * 0.5 per block;
4. kernel:   lookup + shift-accumulate + epilogue, parallel over 64-row tiles, on the ISA path
             tmac.kernels.dispatch chose (every path: the same functions and arguments).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from tmac.kernels import tables as _tables
from tmac.kernels import tiles
from tmac.kernels.dispatch import kernel_for
from tmac.layout import UNIT_K, PackedCodes, pack_params


@dataclass(frozen=True)
class Plan:
    """Block geometry for one (K, group_size, act_group_size); all arrays int64 per block."""

    k_padded: int          # Kp, K rounded up to a multiple of 4
    k_units: int           # Kpp, Kp rounded up to a multiple of 16 (packed width)
    act_group_size: int
    n_act_groups: int
    starts: np.ndarray     # block b covers K columns [starts[b], stops[b])
    stops: np.ndarray
    weight_group: np.ndarray
    act_group: np.ndarray
    g0: np.ndarray         # table groups [g0, g1) of each block
    g1: np.ndarray
    u0: np.ndarray         # 16-column units [u0, u1) touched by each block
    u1: np.ndarray
    aligned: bool          # every block starts on a unit and ends on a unit or at Kp
    blocks: np.ndarray     # (7, nblocks) int64: u0, u1, 4*u0, weight_group, starts, stops,
                           # act_group: the kernels' one plan argument (tmac.kernels.portable;
                           # matmul_int8 also reads Kp from stops[-1])


def read_only(a: np.ndarray) -> np.ndarray:
    """``a``, made read-only in place. Every plan array a kernel receives is read-only: Numba
    types read-only and writable arrays apart, so a mix would compile each kernel twice."""
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=256)
def plan(k: int, n_weight_groups: int, act_group_size: int) -> Plan:
    """Blocks as in docs/numerics.md: W_eff = W if W < K else Kp, B = min(A, W_eff).

    Cached per shape; the returned arrays are read-only."""
    kp = -(-k // 4) * 4
    kpp = max(1, -(-kp // UNIT_K)) * UNIT_K
    group_size = k // n_weight_groups
    w_eff = kp if group_size >= k else group_size
    a_eff = min(int(act_group_size), kp)
    width, wider = min(w_eff, a_eff), max(w_eff, a_eff)
    if act_group_size % 4 or act_group_size <= 0 or (wider % width and wider != kp):
        raise ValueError(f"act_group_size {act_group_size} does not nest with group size {group_size}")
    starts = np.arange(0, kp, width, dtype=np.int64)
    stops = np.minimum(starts + width, kp)
    aligned = bool(np.all(starts % UNIT_K == 0) and np.all((stops % UNIT_K == 0) | (stops == kp)))
    arrays = [starts, stops, starts // w_eff, starts // a_eff, starts // 4, stops // 4,
              starts // UNIT_K, -(-stops // UNIT_K)]
    blocks = np.ascontiguousarray(np.stack([arrays[6], arrays[7], 4 * arrays[6], arrays[2], starts, stops,
                                            arrays[3]]))
    for a in arrays + [blocks]:
        read_only(a)
    return Plan(kp, kpp, int(act_group_size), (kp - 4) // int(act_group_size) + 1, *arrays, aligned,
                blocks)


def pad_activations(x, k_units: int) -> np.ndarray:
    """x (N, K) float32 -> (N, Kpp) float32, zero columns appended."""
    n, k = x.shape
    xp = np.zeros((n, k_units), np.float32)
    xp[:, :k] = x
    return xp


def int8_tables(xp, p: Plan):
    """(tables (N, Kpp/4, 16) int8, table scales (N, n_act_groups) float32)."""
    n = xp.shape[0]
    scales = np.empty((n, p.n_act_groups), np.float32)
    _tables.table_scales(xp, p.act_group_size, scales)
    qt = np.empty((n, p.k_units // 4, 16), np.int8)
    _tables.build_tables_int8(xp, p.act_group_size, scales, qt)
    return qt, scales


def float_tables(xp):
    """Float tables (N, Kpp/4, 16) float32 (mirror build)."""
    t = np.empty((xp.shape[0], xp.shape[1] // 4, 16), np.float32)
    _tables.build_tables_f32(xp, t)
    return t


def unit_slots(qt, p: Plan):
    """Tables arranged for kernels that walk whole units: (slots, blocks with the slots' s0).

    Aligned plans use the tables as they are (s0 = 4*u0). Otherwise each block gets its own
    copy of the units it touches, with the groups outside the block zeroed (zero entries add
    nothing to the exact integer sums).
    """
    if p.aligned:
        return qt, p.blocks
    counts = 4 * (p.u1 - p.u0)
    s0 = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    slots = np.zeros((qt.shape[0], int(counts.sum()), 16), np.int8)
    for b in range(len(p.starts)):
        dst = s0[b] + p.g0[b] - 4 * p.u0[b]
        slots[:, dst:dst + p.g1[b] - p.g0[b]] = qt[:, p.g0[b]:p.g1[b]]
    blocks = p.blocks.copy()
    blocks[2] = s0
    return slots, read_only(blocks)


def block_sums(xp, p: Plan):
    out = np.empty((xp.shape[0], len(p.starts)), np.float32)
    _tables.block_sums(xp, p.starts, p.stops, out)
    return out


def transposed_scales(packed: PackedCodes, scales, zeros):
    """(sc, off) in the kernel layout: the packed weight's own (either form), else the
    zero-point form of ``scales``/``zeros`` transposed now (uint8 zeros where they are small
    integers; tmac.layout.pack_params)."""
    if packed.scales_t is not None:
        return packed.scales_t, packed.zeros_t
    return pack_params(scales, zeros)


def run_lut(packed: PackedCodes, scales, zeros, x, act_group_size: int, lut: str, isa: str,
            threads: int, tiles_per_task: int | None = None) -> np.ndarray:
    """The whole LUT matmul on ISA path ``isa`` in two calls (tables, then the kernel): any
    plan, any weight (scales transposed now if the packed weight lacks them); (N, M) float32."""
    x = np.ascontiguousarray(x, np.float32)
    sc, off = transposed_scales(packed, scales, zeros)
    p = plan(packed.k, (sc[1] if isinstance(sc, tuple) else sc).shape[1], act_group_size)
    n_tiles = packed.data.shape[0]
    if tiles_per_task is None:
        tiles_per_task = tiles.lookup(isa, packed.m, packed.k, packed.bits, x.shape[0], threads, lut)
    tpt = tiles_per_task or tiles.default_tiles_per_task(n_tiles, threads)
    out = np.empty((x.shape[0], packed.m_padded), np.float32)
    if lut == "int8":
        qt, half, xsum = _tables.prepare_int8(x, p.k_units, p.act_group_size, p.n_act_groups,
                                               p.starts, p.stops, p.act_group)
        slots, blocks = unit_slots(qt, p)
        kernel_for("lut_int8", isa)(packed.data, slots, blocks, half, xsum, sc, off, out, tpt)
    else:
        t, xsum = _tables.prepare_f32(x, p.k_units, p.starts, p.stops)
        kernel_for("lut_float32", isa)(packed.data, t, p.blocks, xsum, sc, off, out, tpt)
    return out[:, :packed.m] if x.shape[0] == 1 else np.ascontiguousarray(out[:, :packed.m])


@functools.lru_cache(maxsize=None)
def _thread_control():
    """(get, set, max) for Numba's thread count. Numba's public get/set cost ~1-2 µs per call
    (lock + checks); once the pool is up, its ctypes entry points do the same in ~0.1 µs."""
    import numba
    from numba.np.ufunc import parallel

    numba.get_num_threads()                      # launches the pool
    get = getattr(parallel, "_get_num_threads", None)
    put = getattr(parallel, "_set_num_threads", None)
    if get is None or put is None:
        get, put = numba.get_num_threads, numba.set_num_threads
    return get, put, numba.config.NUMBA_NUM_THREADS


def run_int8_one_call(packed: PackedCodes, x, act_group_size, isa, threads, tiles_per_task):
    """The int8 matmul in one compiled call (``matmul_int8`` of path ``isa``: table build +
    kernel), or None when the plan is not unit-aligned (run_lut then handles it: two calls).
    Needs ``packed.scales_t``. One specialization per path and parameter form (uint8 zeros
    is the usual case; each costs ~10 s of compilation, since Numba re-optimizes the linked
    table build and kernel).

    Kept short on purpose: the kernel streams megabytes through the caches, so every Python
    step here runs with cold caches (~0.5-1 µs each at 4096 x 4096)."""
    get, put, most = _thread_control()
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, np.float32)
    p = plan(packed.k, packed.n_weight_groups, int(act_group_size))
    if not p.aligned:
        return None
    before = get()
    t = before if threads is None else max(1, min(int(threads), most))
    if tiles_per_task is None and tiles.has_entries():
        tiles_per_task = tiles.lookup(isa, packed.m, packed.k, packed.bits, x.shape[0], t, "int8")
    if not tiles_per_task:
        tiles_per_task = tiles.default_tiles_per_task(packed.data.shape[0], t)
    off = packed.zeros_t
    kernel = kernel_for("matmul_int8", isa)
    if t == before:
        out = kernel(x, p.blocks, packed.data, packed.scales_t, off, p.act_group_size, tiles_per_task)
    else:
        put(t)
        try:
            out = kernel(x, p.blocks, packed.data, packed.scales_t, off, p.act_group_size,
                         tiles_per_task)
        finally:
            put(before)
    return out[:, :packed.m] if x.shape[0] == 1 else np.ascontiguousarray(out[:, :packed.m])
