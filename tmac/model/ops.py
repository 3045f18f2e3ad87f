"""The non-matmul steps of the llama forward as Numba functions (``cache=True``; nothing compiles
at import). They write into buffers the caller owns (planned by tmac.model.shapes) and read
only the columns they need, so padded buffers (rows of a 64-multiple width) are fine.

Floats differ from the numpy reference in summation order, in multiplying by reciprocals and
in exp (tmac.model.expf, within 4 ulp); the tests state the tolerance. The order of every sum
is written in the source (``dot``, ``total``: LANES running sums, then a fixed tree), and no
fastmath flag lets LLVM change it, so an op gives the same bits wherever it is compiled: alone,
or inlined into the fused model step.
"""
from __future__ import annotations

import math

import numpy as np

from tmac.kernels.jit import njit, prange
from tmac.kernels.simd.generic import add_f32, hsum8_f32, load256, mul_f32, zero256
from tmac.model.expf import FAST, expf

# Options of the ops whose loops should vectorize: the numpy error model makes float division
# plain IEEE (Python's model adds a zero-divisor check and raise, a branch that keeps any loop
# holding a division scalar: SiLU ran 6x slower); FAST changes no bits (tmac.model.expf).
VECTORIZE = dict(cache=True, fastmath=FAST, error_model="numpy")
LANES = 8


@njit(cache=True, inline="always")
def dot(a, b, n):
    """sum(a[i] * b[i] for i < n), a and b contiguous float32, in a fixed order: LANES running
    sums (lane j takes i = j mod LANES, one vector register), added by hsum8_f32's tree, then
    the tail in order. Explicit vector instructions: LLVM has nothing to reorder."""
    acc = zero256()
    body = n - n % LANES
    for i in range(0, body, LANES):
        acc = add_f32(acc, mul_f32(load256(a, i), load256(b, i)))
    result = hsum8_f32(acc)
    for i in range(body, n):
        result += a[i] * b[i]
    return result


@njit(cache=True, inline="always")
def total(a, n):
    """sum(a[i] for i < n), a contiguous float32, in dot's order."""
    acc = zero256()
    body = n - n % LANES
    for i in range(0, body, LANES):
        acc = add_f32(acc, load256(a, i))
    result = hsum8_f32(acc)
    for i in range(body, n):
        result += a[i]
    return result


@njit(**VECTORIZE)
def rms_norm(x, row0, n_rows, dim, weight, eps, out):
    """out[t, :dim] = x[row0 + t, :dim] / sqrt(mean(x^2) + eps) * weight, t < n_rows."""
    for t in range(n_rows):
        row = x[row0 + t]
        ss = dot(row, row, dim)
        inv = np.float32(1.0) / np.sqrt(ss / np.float32(dim) + np.float32(eps))
        for d in range(dim):
            out[t, d] = x[row0 + t, d] * inv * weight[d]


@njit(cache=True)
def rope(buf, n_rows, col0, n_heads, head_dim, rope_dim, cos, sin, pos, neox):
    """Rotate pairs in place: heads at columns col0 + h*head_dim, row t at position pos+t.
    Pair i is (2i, 2i+1) (GGUF llama), or (i, i + rope_dim/2) when ``neox`` (qwen2), as
    tmac.model.reference.rope_pairs."""
    half = rope_dim // 2
    for t in range(n_rows):
        p = pos + t
        for h in range(n_heads):
            base = col0 + h * head_dim
            for i in range(half):
                first = base + (i if neox else 2 * i)
                second = first + (half if neox else 1)
                a = buf[t, first]
                b = buf[t, second]
                c = cos[p, i]
                s = sin[p, i]
                buf[t, first] = a * c - b * s
                buf[t, second] = a * s + b * c


@njit(cache=True)
def add_bias(buf, n_rows, bias):
    """buf[t, :n] += bias (n = bias.size; nothing for an empty bias): Q/K/V biases."""
    for t in range(n_rows):
        for j in range(bias.shape[0]):
            buf[t, j] += bias[j]


@njit(cache=True)
def store_kv(qkv, n_rows, dim, n_kv, head_dim, layer_kv, pos):
    """Copy the new keys/values (columns dim.. of qkv) into the cache views at pos..pos+n_rows.

    layer_kv (2, n_kv, max_ctx, head_dim): this layer's sub-tensor of the cache."""
    kv_dim = n_kv * head_dim
    for t in range(n_rows):
        for h in range(n_kv):
            for d in range(head_dim):
                layer_kv[0, h, pos + t, d] = qkv[t, dim + h * head_dim + d]
                layer_kv[1, h, pos + t, d] = qkv[t, dim + kv_dim + h * head_dim + d]


# Softmax weights below exp(-30) ~ 1e-13 of the largest (which is 1) are set to 0: they are far
# below float32 resolution of the sum, and p * v of such weights is subnormal, which costs
# ~100 cycles per multiply (measured: 40 % of a decode step went to it at 100 tokens of context).
NEGLIGIBLE_LOGIT = np.float32(-30.0)


@njit(**VECTORIZE)
def attention_rows(qkv, row0, row1, n_heads, n_kv, head_dim, layer_kv, pos, scores, out,
                   head0, head1):
    """Causal grouped-query attention of the query rows row0..row1-1, heads head0..head1-1:
    row t attends to the cache prefix [0, pos + t]. Each (row, head) is computed on its own,
    so any split of rows or heads over calls or threads gives the same bits. A plain (not
    inlined) function on purpose: inlined into a parallel loop's body, the loops lost their
    vectorization (3x slower per thread). The 1-D and 2-D views (q, keys, values, row of
    scores, o) let LLVM vectorize the inner loops; the softmax uses the vectorizable expf."""
    group = n_heads // n_kv
    scale = np.float32(1.0 / math.sqrt(head_dim))
    for t in range(row0, row1):
        length = pos + t + 1
        for h in range(head0, head1):
            q0 = h * head_dim
            q = qkv[t, q0:q0 + head_dim]
            keys, values = layer_kv[0, h // group], layer_kv[1, h // group]
            weights = scores[h, t]
            best = np.float32(-np.inf)
            for s in range(length):
                logit = dot(q, keys[s], head_dim) * scale
                weights[s] = logit
                best = max(best, logit)
            for s in range(length):
                d = weights[s] - best
                weights[s] = expf(d) if d > NEGLIGIBLE_LOGIT else np.float32(0.0)
            inv = np.float32(1.0) / total(weights, length)
            o = out[t, q0:q0 + head_dim]
            for d in range(head_dim):
                o[d] = np.float32(0.0)
            for s in range(length):
                p = weights[s] * inv
                for d in range(head_dim):
                    o[d] += p * values[s, d]


@njit(cache=True)
def attention(qkv, n_rows, n_heads, n_kv, head_dim, layer_kv, pos, scores, out):
    """Causal grouped-query attention of the n_rows queries (columns 0..dim of qkv) over the
    cache prefix; scores (n_heads, n_rows, >= pos + n_rows) is scratch. Query head h reads KV
    head h // (n_heads / n_kv). One thread: a decode step's attention is short, and waking
    threads for it costs more than it saves."""
    attention_rows(qkv, 0, n_rows, n_heads, n_kv, head_dim, layer_kv, pos, scores, out, 0,
                   n_heads)


ROW_CHUNKS = 8   # parallel row ranges of prefill steps (any count gives the same bits)


@njit(cache=True, inline="always")
def causal_chunk(c, n_chunks, n_rows, pos):
    """Rows [r0, r1) of chunk c when n_rows causal query rows at positions pos.. are cut into
    n_chunks ranges of about equal attention work (row t costs pos + t + 1)."""
    total = n_rows * (pos + 1) + n_rows * (n_rows - 1) // 2
    r0 = 0
    while r0 < n_rows and (r0 * (pos + 1) + r0 * (r0 - 1) // 2) * n_chunks < c * total:
        r0 += 1
    r1 = r0
    while r1 < n_rows and (r1 * (pos + 1) + r1 * (r1 - 1) // 2) * n_chunks < (c + 1) * total:
        r1 += 1
    return r0, r1


@njit(cache=True, parallel=True)
def attention_parallel(qkv, n_rows, n_heads, n_kv, head_dim, layer_kv, pos, scores, out):
    """``attention`` with the rows spread over threads in chunks of equal work (prefill);
    the same bits as ``attention``."""
    for c in prange(ROW_CHUNKS):
        r0, r1 = causal_chunk(c, ROW_CHUNKS, n_rows, pos)
        attention_rows(qkv, r0, r1, n_heads, n_kv, head_dim, layer_kv, pos, scores, out, 0,
                       n_heads)


@njit(**VECTORIZE)
def swiglu(gate_up, n_rows, ffn_dim, out):
    """out[t, f] = silu(gate[t, f]) * up[t, f]; gate_up holds the gate rows' outputs first.
    silu(g) = g / (1 + expf(-g)) with the vectorizable expf."""
    for t in range(n_rows):
        gate, up, act = gate_up[t, :ffn_dim], gate_up[t, ffn_dim:2 * ffn_dim], out[t, :ffn_dim]
        for f in range(ffn_dim):
            g = gate[f]
            act[f] = g / (np.float32(1.0) + expf(-g)) * up[f]


@njit(cache=True)
def add_into(x, n_rows, dim, y):
    """x[t, :dim] += y[t, :dim] (the residual stream)."""
    for t in range(n_rows):
        for d in range(dim):
            x[t, d] += y[t, d]


@njit(cache=True)
def gather_rows(table, ids, out):
    """out[t] = table[ids[t]] (embedding lookup)."""
    for t in range(ids.shape[0]):
        out[t, :] = table[ids[t], :]

