"""The llama forward pass in plain numpy float32: the specification the fast runtime must match.

Readable first: one function per step, shapes in comments, no buffers, no fusion. Any object
with ``append(layer, k, v) -> (k_all, v_all)`` serves as the KV cache, so the same code runs
with the sub-tensor cache (``tmac.model.kv_cache.KVCache``) and with a cache that concatenates
(``ConcatKVCache``); tests check the two give identical results.

Shapes: T new tokens at positions pos .. pos+T-1; D = dim, H heads of size hd, Hkv KV heads.
"""
from __future__ import annotations

import numpy as np


def rope_tables(max_positions: int, rope_dim: int, base: float):
    """cos, sin (max_positions, rope_dim // 2) float32: angle p * base^(-2i / rope_dim),
    computed in float64 and rounded once (the runtime uses the same tables)."""
    inv_freq = base ** (-np.arange(0, rope_dim, 2, dtype=np.float64) / rope_dim)
    angles = np.arange(max_positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rms_norm(x, weight, eps):
    """x (T, D) -> x / sqrt(mean(x^2) + eps) * weight."""
    ms = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
    return (x / np.sqrt(ms + np.float32(eps))) * weight


def rope_pairs(rope_dim, neox=False):
    """(first, second) index arrays of the pairs RoPE rotates, pair i by angle theta_i:
    adjacent (2i, 2i+1) in GGUF llama files, NEOX (i, i + rope_dim/2) in qwen2 files."""
    i = np.arange(rope_dim // 2)
    return (i, i + rope_dim // 2) if neox else (2 * i, 2 * i + 1)


def apply_rope(x, cos, sin, positions, rope_dim, neox=False):
    """x (..., T, heads, hd): rotate the pairs ``rope_pairs(rope_dim, neox)`` of the first
    rope_dim dims by angle positions[t] * theta_i."""
    x = x.copy()
    c = cos[positions][:, None, :]                   # (T, 1, rope_dim/2)
    s = sin[positions][:, None, :]
    first, second = rope_pairs(rope_dim, neox)
    a, b = x[..., first].copy(), x[..., second].copy()
    x[..., first] = a * c - b * s
    x[..., second] = a * s + b * c
    return x


def qkv_bias(layer):
    """The layer's Q, K and V biases end to end (dim + 2 kv_dim,) float32, or None."""
    if "bq" not in layer:
        return None
    return np.concatenate([layer["bq"], layer["bk"], layer["bv"]]).astype(np.float32)


def attention(q, k_all, v_all, pos):
    """Causal grouped-query attention.

    q (T, H, hd) for positions pos..pos+T-1; k_all, v_all (Hkv, pos+T, hd) -> (T, H * hd).
    Query head h reads KV head h // (H / Hkv).
    """
    t, n_heads, hd = q.shape
    group = n_heads // k_all.shape[0]
    k = np.repeat(k_all, group, axis=0)               # (H, S, hd)
    v = np.repeat(v_all, group, axis=0)
    scores = np.einsum("thd,hsd->hts", q, k) / np.float32(np.sqrt(hd))     # (H, T, S)
    s = k.shape[1]
    allowed = np.arange(s)[None, :] <= (pos + np.arange(t))[:, None]      # (T, S)
    scores = np.where(allowed[None], scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p = p / p.sum(axis=-1, keepdims=True)
    out = np.einsum("hts,hsd->thd", p.astype(np.float32), v)              # (T, H, hd)
    return out.reshape(t, n_heads * hd).astype(np.float32)


def silu(x):
    return x / (np.float32(1) + np.exp(-x))


def linear(x, w):
    """x (T, K) @ w.T with w (M, K) float32."""
    return x @ w.T


class ConcatKVCache:
    """The naive cache: every step concatenates the new K/V onto copies of the old ones."""

    def __init__(self, n_layers):
        self.k = [None] * n_layers
        self.v = [None] * n_layers
        self.length = 0

    def append(self, layer, k, v):
        """k, v (Hkv, T, hd) -> all keys and values so far, (Hkv, S, hd)."""
        self.k[layer] = k if self.k[layer] is None else np.concatenate([self.k[layer], k], axis=1)
        self.v[layer] = v if self.v[layer] is None else np.concatenate([self.v[layer], v], axis=1)
        if layer == len(self.k) - 1:
            self.length = self.k[layer].shape[1]
        return self.k[layer], self.v[layer]


def forward(weights, tokens, cache, pos, linear=linear):
    """Logits (T, vocab) float32 for ``tokens`` (T,) at positions pos..pos+T-1.

    ``weights`` is a loader.LlamaWeights (float32). ``linear(x, name_or_array)`` may be replaced
    (e.g. by dequantized weights) but defaults to ``x @ W.T``.
    """
    c = weights.config
    tokens = np.asarray(tokens)
    t = len(tokens)
    positions = pos + np.arange(t)
    cos, sin = rope_tables(pos + t, c.rope_dim, c.rope_base)
    x = weights.embed[tokens].astype(np.float32)                          # (T, D)
    for i, layer in enumerate(weights.layers):
        h = rms_norm(x, layer["attn_norm"], c.norm_eps)
        q, k, v = linear(h, layer["wq"]), linear(h, layer["wk"]), linear(h, layer["wv"])
        if c.qkv_bias:                                                    # qwen2
            q, k, v = q + layer["bq"], k + layer["bk"], v + layer["bv"]
        q = apply_rope(q.reshape(t, c.n_heads, c.head_dim), cos, sin, positions, c.rope_dim,
                       c.rope_neox)
        k = apply_rope(k.reshape(t, c.n_kv_heads, c.head_dim), cos, sin, positions, c.rope_dim,
                       c.rope_neox)
        v = v.reshape(t, c.n_kv_heads, c.head_dim)
        k_all, v_all = cache.append(i, k.transpose(1, 0, 2), v.transpose(1, 0, 2))
        x = x + linear(attention(q, k_all, v_all, pos), layer["wo"])
        h = rms_norm(x, layer["ffn_norm"], c.norm_eps)
        x = x + linear(silu(linear(h, layer["w_gate"])) * linear(h, layer["w_up"]), layer["w_down"])
    return linear(rms_norm(x, weights.output_norm, c.norm_eps), weights.output)
