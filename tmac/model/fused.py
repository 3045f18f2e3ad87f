"""One Numba call for all transformer layers of a forward step (AVX-512 LUT path).

Python overhead per token must not dominate a 135M model's ~10 ms token, so the whole layer
stack — RMSNorm, tables, LUT GEMV/GEMM, RoPE, KV write, attention, SwiGLU, residuals — runs
inside ``layers_avx512``, one compiled call per forward step, writing only into buffers planned
by ``tmac.model.shapes`` (no allocation in the decode loop).

This module is the one place the model runtime reaches below ``tmac.kernels.lut_matmul``: it
calls the kernel functions it wraps (table scales, int8 table build, block sums, the AVX-512
int8 lookup kernel) with preallocated outputs. ``tests/test_model.py`` checks every fused linear
against ``tmac.matmul`` element for element, so a change of those internals is caught. It is
imported only when ``tmac.dispatch`` picks the avx512 path; other CPUs run the per-layer path of
``tmac.model.runtime`` (the same ops, with ``tmac.kernels.lut_matmul`` per linear layer).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

import tmac.kernels.lut_avx512
import tmac.kernels.simd
import tmac.kernels.tables
from tmac.kernels.lut_avx512 import lut_int8_avx512
from tmac.kernels.tables import block_sums, build_tables_int8, table_scales
from tmac.model import ops

# Numba's on-disk cache of a function is keyed by its own file only, yet the compiled code
# includes every function it calls. If a kernel module changes, this module's cached code would
# be stale (wrong results or a crash), so the cache is dropped when any callee file changes.
_DEPENDENCIES = (tmac.kernels.lut_avx512, tmac.kernels.tables, ops, tmac.kernels.simd)


def _dependency_stamp():
    import hashlib
    from pathlib import Path

    files = [Path(m.__file__) for m in _DEPENDENCIES]
    files += sorted(Path(tmac.kernels.simd.__file__).parent.glob("*.py"))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()


def _drop_stale_cache(dispatcher):
    """Remove this module's cached compilations if a callee's source differs from last time."""
    from pathlib import Path

    try:
        folder = Path(dispatcher._cache._cache_path)
        stamp_file = folder / (Path(__file__).stem + ".deps")
        stamp = _dependency_stamp()
        if stamp_file.is_file() and stamp_file.read_text() == stamp:
            return
        for f in folder.glob(Path(__file__).stem + ".*.nb[ic]"):
            f.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        stamp_file.write_text(stamp)
    except OSError:                     # read-only install: nothing cached here to go stale
        pass


@njit(cache=True, parallel=True)
def _tables_rows(xin, act, tables, tscale, xsum, starts, stops):
    """Prefill: the tables of each token built on its own thread (rows are independent)."""
    for r in prange(xin.shape[0]):
        table_scales(xin[r:r + 1], act, tscale[r:r + 1])
        build_tables_int8(xin[r:r + 1], act, tscale[r:r + 1], tables[r:r + 1])
        block_sums(xin[r:r + 1], starts, stops, xsum[r:r + 1])


@njit(cache=True)
def lut_linear(xin, w, buf, out, tiles_per_task, threads=1):
    """out (T, Mp) = xin (T, Kpp) @ W.T by int8 table lookup, bit-identical to tmac.matmul.

    w   = (data, scales_t, offsets_t, act_group_size, u0, u1, s0, weight_group, starts, stops,
           act_group): one layer's packed weight and its block plan (aligned plans only)
    buf = (tables (T, Kpp/4, 16) int8, tscale (T, n_act), xsum (T, nblk), half (T, nblk))
    """
    data, sc, off, act, u0, u1, s0, wg, starts, stops, act_of_block = w
    tables, tscale, xsum, half = buf
    if threads > 1 and xin.shape[0] > 1:
        _tables_rows(xin, act, tables, tscale, xsum, starts, stops)
    else:
        table_scales(xin, act, tscale)
        build_tables_int8(xin, act, tscale, tables)
        block_sums(xin, starts, stops, xsum)
    for n in range(xin.shape[0]):
        for b in range(half.shape[1]):
            half[n, b] = tscale[n, act_of_block[b]] * np.float32(0.5)
    lut_int8_avx512(data, tables, u0, u1, s0, half, xsum, wg, sc, off, out, tiles_per_task)


@njit(cache=True)
def _layer_weight(w, layer):
    data, sc, off, act, u0, u1, s0, wg, starts, stops, actb = w
    return (data[layer], sc[layer], off[layer], act, u0, u1, s0, wg, starts, stops, actb)


@njit(cache=True)
def layers_avx512(dims, eps, pos, x, attn_norm, ffn_norm, cos, sin, kv,
                  w_qkv, w_o, w_gu, w_down, h, qkv, scores, attn, o, gu, act, down,
                  b_qkv, b_o, b_gu, b_down, tiles, threads):
    """All layers for T = x.shape[0] tokens at positions pos..pos+T-1; x (T, D) updated in place.

    dims = (n_layers, dim, ffn_dim, n_heads, n_kv_heads, head_dim, rope_dim); w_* are stacked
    over layers (leading axis), kv is the cache storage (layers, 2, Hkv, max_ctx, hd).
    tiles = row tiles per parallel task for (qkv, o, gate_up, down); threads = Numba's
    current thread count (prefill attention runs over heads in parallel when > 1).
    """
    n_layers, dim, ffn, n_heads, n_kv, hd, rope_dim = dims
    t = x.shape[0]
    for layer in range(n_layers):
        ops.rms_norm(x, 0, t, dim, attn_norm[layer], eps, h)
        lut_linear(h, _layer_weight(w_qkv, layer), b_qkv, qkv, tiles[0], threads)
        ops.rope(qkv, t, 0, n_heads, hd, rope_dim, cos, sin, pos)
        ops.rope(qkv, t, dim, n_kv, hd, rope_dim, cos, sin, pos)
        ops.store_kv(qkv, t, dim, n_kv, hd, kv[layer], pos)
        if t > 1 and threads > 1:
            ops.attention_parallel(qkv, t, n_heads, n_kv, hd, kv[layer], pos, scores, attn)
        else:
            ops.attention(qkv, t, n_heads, n_kv, hd, kv[layer], pos, scores, attn)
        lut_linear(attn, _layer_weight(w_o, layer), b_o, o, tiles[1], threads)
        ops.add_into(x, t, dim, o)
        ops.rms_norm(x, 0, t, dim, ffn_norm[layer], eps, h)
        lut_linear(h, _layer_weight(w_gu, layer), b_gu, gu, tiles[2], threads)
        if t > 1 and threads > 1:
            ops.swiglu_parallel(gu, t, ffn, act)
        else:
            ops.swiglu(gu, t, ffn, act)
        lut_linear(act, _layer_weight(w_down, layer), b_down, down, tiles[3], threads)
        ops.add_into(x, t, dim, down)


_drop_stale_cache(lut_linear)
