"""GPTQ for a whole llama model, layer after layer (tmac.reference.gptq does one matrix).

Each linear layer is fitted on the inputs it sees in the model as it will run: the calibration
sequences go through the transformer in float32 numpy (tmac.model.reference's steps), and every
layer's inputs are taken with the layers before it, and the projections before it in its own
block, already quantized:

    X            hidden states of the calibration tokens, (S, T, D) float32
    per block:   h = rms_norm(X)                 -> H_qkv;  Q, K, V fitted as one matrix
                 a = attention(rope(h Q^T), ...) -> H_o;    O fitted
                 X2 = X + a O^T;  h2 = rms_norm(X2) -> H_gu; gate and up fitted as one matrix
                 m = silu(h2 G^T) * (h2 U^T)     -> H_down; down fitted
                 X = X2 + m D^T

with H = 2 X^T X / n over all calibration tokens (tmac.reference.gptq.Hessian), act-order,
static contiguous groups and ``REFITS`` refits of the group parameters to the codes. Memory: the hidden states and one layer's activations, (S, T, 3 D)
float32, and one K x K Hessian. The output head keeps the ordinary fit (its format is the
model's head format, 8 bits by default).
"""
from __future__ import annotations

import numpy as np

from tmac.model import reference as spec
from tmac.reference import affine, gptq

DAMP = 0.01
REFITS = 6          # group parameters refitted to the codes, and the columns swept again
                    # (tmac.reference.gptq, "refits"): 3-bit g32 on SmolLM2, docs text, 32
                    # calibration sequences: 1.454x f32 without, 1.329x with 3, 1.3045x with 6
                    # (docs/quality.md)


def _fit(w, inputs, fmt, act_order):
    """(codes, scales, offsets) of one matrix fitted by GPTQ on ``inputs`` (..., K)."""
    h = gptq.hessian(inputs.reshape(-1, inputs.shape[-1]))
    group = fmt.group_size or w.shape[1]
    return gptq.gptq(np.asarray(w, np.float32), h, fmt.bits, group, act_order=act_order,
                     damp=DAMP, refits=REFITS)


def _attention(x, lw, c, q_w, cos, sin):
    """Causal attention outputs (S, T, H * hd) of every sequence, with the fitted Q/K/V:
    tmac.model.reference's steps, batched over sequences and heads (matrix products)."""
    s, t, _ = x.shape
    positions = np.arange(t)
    kv_dim = c.n_kv_heads * c.head_dim
    qkv = x @ q_w.T
    bias = spec.qkv_bias(lw)
    if bias is not None:
        qkv = qkv + bias
    q = qkv[..., :c.dim].reshape(s, t, c.n_heads, c.head_dim)
    k = qkv[..., c.dim:c.dim + kv_dim].reshape(s, t, c.n_kv_heads, c.head_dim)
    v = qkv[..., c.dim + kv_dim:].reshape(s, t, c.n_kv_heads, c.head_dim)
    q = spec.apply_rope(q, cos, sin, positions, c.rope_dim, c.rope_neox).transpose(0, 2, 1, 3)
    group = c.n_heads // c.n_kv_heads
    k = np.repeat(spec.apply_rope(k, cos, sin, positions, c.rope_dim, c.rope_neox).transpose(0, 2, 1, 3),
                  group, axis=1)
    v = np.repeat(v.transpose(0, 2, 1, 3), group, axis=1)
    scores = (q @ k.transpose(0, 1, 3, 2)) / np.float32(np.sqrt(c.head_dim))       # (S, H, T, T)
    scores[..., np.triu(np.ones((t, t), bool), 1)] = -np.inf
    scores -= scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    return (p @ v).transpose(0, 2, 1, 3).reshape(s, t, c.n_heads * c.head_dim).astype(np.float32)


def fit_layers(weights, fmt, ids, act_order=True, progress=None, matrix_formats=None) -> list:
    """Per layer {"qkv", "o", "gate_up", "down"}: (codes, scales, offsets) in the affine form,
    fitted by GPTQ on the calibration ``ids`` (S, T). ``fmt`` gives bits and group size;
    ``matrix_formats`` {"<layer>.<linear>": ModelFormat} another for any matrix (a mix)."""
    chosen = matrix_formats or {}
    c = weights.config
    ids = np.asarray(ids, np.int64)
    cos, sin = spec.rope_tables(ids.shape[1], c.rope_dim, c.rope_base)
    x = weights.embed[ids].astype(np.float32)                               # (S, T, D)
    fitted = []
    for i, lw in enumerate(weights.layers):
        out = {}
        h = spec.rms_norm(x, lw["attn_norm"], c.norm_eps)
        f = {name: chosen.get(f"{i}.{name}", fmt) for name in ("qkv", "o", "gate_up", "down")}
        out["qkv"] = _fit(np.vstack([lw["wq"], lw["wk"], lw["wv"]]), h, f["qkv"], act_order)
        a = _attention(h, lw, c, affine.dequantize(*out["qkv"]), cos, sin)
        out["o"] = _fit(lw["wo"], a, f["o"], act_order)
        x = x + a @ affine.dequantize(*out["o"]).T
        h = spec.rms_norm(x, lw["ffn_norm"], c.norm_eps)
        out["gate_up"] = _fit(np.vstack([lw["w_gate"], lw["w_up"]]), h, f["gate_up"], act_order)
        gate_up = h @ affine.dequantize(*out["gate_up"]).T
        m = spec.silu(gate_up[..., :c.ffn_dim]) * gate_up[..., c.ffn_dim:]
        out["down"] = _fit(lw["w_down"], m, f["down"], act_order)
        x = x + m @ affine.dequantize(*out["down"]).T
        fitted.append(out)
        if progress:
            progress(i + 1, len(weights.layers))
    return fitted
