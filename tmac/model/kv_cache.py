"""The sub-tensor KV cache (Transformer-Lite, arXiv 2403.20041).

One buffer per layer is allocated once, for the maximum context:

    keys[layer], values[layer]   (n_kv_heads, max_ctx, head_dim) float32

Step t writes its T new keys/values into the view ``[:, pos:pos+T]`` and attention reads the
prefix view ``[:, :pos+T]``. Nothing is copied or allocated per step: the views alias the one
buffer (tests check the identity of the buffers and trace memory over decode steps). The
per-layer buffers are sub-tensors of a single allocation ``storage`` (layers, 2, Hkv, ctx, hd),
which the fused runtime hands to Numba in one argument.
"""
from __future__ import annotations

import numpy as np


class KVCache:
    def __init__(self, n_layers: int, n_kv_heads: int, head_dim: int, max_ctx: int):
        self.max_ctx = int(max_ctx)
        self.storage = np.zeros((n_layers, 2, n_kv_heads, self.max_ctx, head_dim), np.float32)
        self.keys = [self.storage[i, 0] for i in range(n_layers)]      # views, one per layer
        self.values = [self.storage[i, 1] for i in range(n_layers)]
        self.length = 0            # positions filled (advanced by the caller after a forward)

    @property
    def nbytes(self) -> int:
        return self.storage.nbytes

    def check_room(self, pos: int, n_new: int):
        if pos + n_new > self.max_ctx:
            raise ValueError(f"context full: {pos} + {n_new} tokens exceed max_ctx={self.max_ctx}")

    def write(self, layer: int, pos: int, k, v):
        """Store k, v (Hkv, T, hd) at positions pos..pos+T-1 (in place, into the view)."""
        t = k.shape[1]
        self.check_room(pos, t)
        self.keys[layer][:, pos:pos + t] = k
        self.values[layer][:, pos:pos + t] = v

    def prefix(self, layer: int, length: int):
        """Views (Hkv, length, hd) of the first ``length`` positions: no copy."""
        return self.keys[layer][:, :length], self.values[layer][:, :length]

    def reset(self):
        """Forget the context (the buffers are kept; stale values are overwritten before use)."""
        self.length = 0


class ReferenceCacheAdapter:
    """Gives the KVCache the ``append`` interface of tmac.model.reference.forward."""

    def __init__(self, cache: KVCache, pos: int):
        self.cache, self.pos = cache, pos

    def append(self, layer, k, v):
        self.cache.write(layer, self.pos, k, v)
        return self.cache.prefix(layer, self.pos + k.shape[1])
