"""A token embedding kept in its file's blocks: rows decoded as they are looked up.

A real model's embedding is large: Qwen2.5-Coder-1.5B's 151936 x 1536 table is 933 MB as
float32 and Gemma 3's 262144 x 640 is 671 MB, against 249 MB and 178 MB in their files' block
types. A forward step reads only its tokens' rows, so the table stays in its blocks and each
lookup decodes the rows it needs with tmac.reference.ggml (bit for bit gguf's dequantization,
so the floats equal those of a float32 table dequantized from the same file).

    emb = BlockEmbedding.from_raw("Q8_0", raw, (vocab, dim))
    emb[ids]            # (..., dim) float32 for an integer array (or slice) of token ids
    np.asarray(emb)     # the whole table as float32 (explicitly asked for only)
"""
from __future__ import annotations

import numpy as np

from tmac.reference import ggml

CHECK_ROWS = 8192          # rows decoded at once when the file's blocks are checked at load


class BlockEmbedding:
    """raw (vocab, row_bytes) uint8: each row's blocks of type ``kind``, as in the file."""

    def __init__(self, kind: str, raw: np.ndarray, shape: tuple):
        self.kind, self.raw, self.shape = kind, raw, (int(shape[0]), int(shape[1]))
        self.block = ggml.get(kind)
        self.dtype = np.dtype(np.float32)

    @classmethod
    def from_raw(cls, kind: str, raw: np.ndarray, shape: tuple) -> "BlockEmbedding":
        """Checked: the bytes fit the shape and every block's scales are finite (ValueError)."""
        vocab, dim = int(shape[0]), int(shape[1])
        block = ggml.get(kind)
        if dim % block.block_size:
            raise ValueError(f"row length {dim} is not a multiple of {kind}'s block of "
                             f"{block.block_size}")
        row_bytes = dim // block.block_size * block.type_size
        raw = np.asarray(raw, np.uint8).reshape(-1)
        if raw.size != vocab * row_bytes:
            raise ValueError(f"{raw.size} bytes, expected {vocab} rows of {row_bytes}")
        raw = np.array(raw.reshape(vocab, row_bytes))    # a copy: the file's map can close
        for r0 in range(0, vocab, CHECK_ROWS):
            rows = raw[r0:r0 + CHECK_ROWS]
            ggml.check_finite(ggml.decode_matrix(kind, rows.reshape(-1), (rows.shape[0], dim)),
                              f"rows {r0}..{r0 + rows.shape[0] - 1}")
        return cls(kind, raw, (vocab, dim))

    @property
    def nbytes(self) -> int:
        return self.raw.nbytes

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, ids) -> np.ndarray:
        """Rows ``ids`` (an integer, integer array of any shape, or slice) as float32."""
        index = np.arange(self.shape[0])[ids] if isinstance(ids, slice) else np.asarray(ids)
        if index.dtype.kind not in "iu":
            raise TypeError(f"embedding rows are looked up by integer ids, got {index.dtype}")
        flat = index.reshape(-1)
        rows = self.block.dequantize(self.raw[flat].reshape(-1))
        return rows.reshape(index.shape + (self.shape[1],))

    def __array__(self, dtype=None, copy=None):
        table = self[np.arange(self.shape[0])]
        return table if dtype is None else table.astype(dtype)

    def rows_into(self, ids: np.ndarray, out: np.ndarray):
        """out[t, :dim] = row ids[t] (the runtime's embedding step)."""
        out[:ids.shape[0], :self.shape[1]] = self[ids]


def as_runtime_table(embed):
    """What a PreparedModel keeps: a BlockEmbedding as it is, else a contiguous float32 table."""
    if isinstance(embed, BlockEmbedding):
        return embed
    return np.ascontiguousarray(embed, np.float32)
