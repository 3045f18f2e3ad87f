"""Fast Numba kernels for tmac: table build, LUT GEMV/GEMM per ISA path, dequant baseline.

Entry points (called by tmac.api through tmac.registry):

    lut_matmul(packed, scales, zeros, bits, x, act_group_size, lut="int8", isa=None, threads=None)
    dequant_matmul(packed_or_codes, scales, zeros, bits, x, isa=None, threads=None)
    warmup(isa=None)   compile (or load from the on-disk cache) every kernel this CPU uses

Importing this package compiles nothing and imports no kernel module: each kernel module is
imported when first needed, and its functions compile (``cache=True``) on first call.
Every result equals tmac.reference bit for bit, for any ISA path and thread count.
"""
from __future__ import annotations

import contextlib
import functools
import importlib

import numpy as np

from tmac.kernels import dispatch
from tmac.layout import PackedCodes, pack, unpack

SMALL_WORK = 4096   # 128-byte steps (packed registers x tokens) below which one thread runs


@contextlib.contextmanager
def num_threads(threads: int | None):
    """Run the block with Numba's thread count set to ``threads`` (None: leave as is).

    Yields the thread count in effect. Costs nothing when no change is needed.
    """
    import numba

    before = numba.get_num_threads()
    want = before if threads is None else max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    if want == before:
        yield before
        return
    numba.set_num_threads(want)
    try:
        yield want
    finally:
        numba.set_num_threads(before)


def _packed(packed_or_codes, bits):
    if isinstance(packed_or_codes, PackedCodes):
        return packed_or_codes
    return pack(np.asarray(packed_or_codes, np.uint8), bits)


@functools.lru_cache(maxsize=None)
def _lut_module():
    return importlib.import_module("tmac.kernels.lut")


def lut_matmul(packed, scales, zeros, bits, x, act_group_size, lut="int8", isa=None, threads=None,
               tiles_per_task=None):
    """y = x @ dequantize(W).T by table lookup; equals tmac.reference.lut_matmul bit for bit.

    packed          tmac.layout.PackedCodes (or raw (M, K) uint8 codes, packed on the fly)
    scales, zeros   (M, K // group_size) float32 zero-point parameters, used only when ``packed``
                    carries none (a PackedCodes with parameters may come with None here)
    bits            1..4
    x               (N, K) float32
    act_group_size  multiple of 4; >= K for one table scale per row
    lut             "int8" or "float32"
    isa             None (best for this CPU / $TMAC_ISA), "avx512", "avx2" or "portable"
    threads         Numba threads (None: current setting, or 1 for small work); rows are split
                    over threads, never K, so any count gives the same bits
    Returns (N, M) float32.
    """
    packed = _packed(packed, bits)
    if packed.bits != bits:
        raise ValueError(f"packed weight has {packed.bits} bits, not {bits}")
    path = dispatch.choose("lut_" + lut, isa)
    if threads is None and packed.data.size // 128 * len(x) < SMALL_WORK:
        threads = 1     # a second thread costs more to wake than it saves (~20 µs of work)
    lut_module = _lut_module()
    if lut == "int8" and packed.scales_t is not None:
        out = lut_module.run_int8_one_call(packed, x, act_group_size, path, threads, tiles_per_task)
        if out is not None:
            return out
    with num_threads(threads) as t:
        return lut_module.run_lut(packed, scales, zeros, x, int(act_group_size), lut, path, t,
                                  tiles_per_task)


def dequant_matmul(packed_or_codes, scales, zeros, bits, x, isa=None, threads=None):
    """Dequantize-then-multiply baseline; equals tmac.reference.dequant_matmul bit for bit.

    packed_or_codes  tmac.layout.PackedCodes (fast: 16 rows per register, codes extracted from
                     the bit planes) or (M, K) uint8 codes (plain Numba, slower)
    Returns (N, M) float32.
    """
    from tmac.kernels.dequant import run_dequant, run_dequant_packed

    dispatch.choose("dequant", isa)
    with num_threads(threads):
        if isinstance(packed_or_codes, PackedCodes):
            return run_dequant_packed(packed_or_codes, scales, zeros, x)
        return run_dequant(np.ascontiguousarray(packed_or_codes, np.uint8),
                           np.asarray(scales, np.float32), np.asarray(zeros, np.float32), x)


def warmup(isa=None, verbose=False):
    """Compile (or load from cache) every kernel the chosen paths use, on tiny inputs.

    Returns {op: path}. Only paths this CPU has are compiled.
    """
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, (3, 40)).astype(np.uint8)
    scales = np.ones((3, 1), np.float32)
    zeros = np.ones((3, 1), np.float32)
    x = rng.standard_normal((1, 40)).astype(np.float32)
    done = {}
    packed = pack(codes, 2, scales, zeros)      # uint8 zeros: the one-call avx512 int8 path
    for lut in ("int8", "float32"):
        done["lut_" + lut] = dispatch.choose("lut_" + lut, isa)
        lut_matmul(codes, scales, zeros, 2, x, 40, lut, isa=isa)
        lut_matmul(packed, scales, zeros, 2, x, 40, lut, isa=isa)
        if verbose:
            print(f"lut_{lut}: {done['lut_' + lut]}")
    done["dequant"] = dispatch.choose("dequant", isa)
    dequant_matmul(codes, scales, zeros, 2, x, isa=isa)
    dequant_matmul(pack(codes, 2, scales, zeros), scales, zeros, 2, x, isa=isa)
    return done
