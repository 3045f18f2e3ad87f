"""The fast llama forward: planned buffers, sub-tensor KV cache, LUT kernels, few calls per token.

    model = prepare(weights, parse("w4"))          # requantize once (cached on disk by callers)
    rt = Runtime(model, max_ctx=512)
    logits = rt.forward(prompt_ids)                 # prefill: GEMM kernels, (1, vocab)
    logits = rt.forward([next_id])                  # decode: GEMV kernels

Two execution paths, same math and same buffers:

fused    (quantized formats, int8 tables, any ISA path) every layer of a step in one Numba call
         (tmac.model.fused), Q/K/V and gate/up stacked into one matrix each, then one call for
         the output head.
layers   (any CPU, f32, the dequant baseline, the numpy reference kernels) a Python loop over
         layers calling the Numba ops of tmac.model.ops and one matmul per linear layer.

Intermediates come from one arena planned by tmac.model.shapes for the maximum lengths; the KV
cache is tmac.model.kv_cache.KVCache. The returned logits are a view into the arena, valid until
the next call.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tmac.model import ops
from tmac.model.embedding import BlockEmbedding, as_runtime_table
from tmac.model.formats import ModelFormat, head_format, stack_rows
from tmac.model.kv_cache import KVCache
from tmac.model.loader import LlamaConfig, LlamaWeights
from tmac.model.reference import rope_tables
from tmac.model.shapes import Expr, Graph, plan, sym

MATMULS = ("lut", "dequant", "reference")
# Activations per int8 table scale. A table entry sums 4 activations, so an int8 step is ~4x an
# activation's own int8 step, and one outlier channel coarsens its whole group: at 32 the tables
# cost SmolLM2 +0.6 % perplexity over float tables (exact Q4_1 weights, docs text), at 16 +0.1 %.
ACT_GROUP_SIZE = 16


@dataclass
class PreparedModel:
    """Weights in a tmac format, with Q/K/V and gate/up stacked.

    ``layers[i]`` has "qkv", "o", "gate_up", "down" (float32 (M, K) arrays for f32, else
    QuantizedWeight) and the float32 vectors of ``layer_vectors``; ``head`` likewise;
    ``embed`` is float32 or a BlockEmbedding (a large table left in its file's blocks).
    ``notes``: what a saved model file says of itself (its measured quality, a mix's plan).
    """

    config: LlamaConfig
    format: ModelFormat
    embed: np.ndarray
    output_norm: np.ndarray
    head: object
    layers: list
    notes: dict = field(default_factory=dict)

    @property
    def head_format(self):
        return head_format(self.format)

    def matrices(self) -> list:
        """Every linear weight (head first; a list of parts counts each part)."""
        mats = [self.head] + [l[k] for l in self.layers for k in LINEARS]
        return [p for m in mats for p in (m if isinstance(m, list) else [m])]

    def weight_bytes(self) -> int:
        """Bytes of all linear weights as stored (codes bit-packed, scales, zeros)."""
        return sum(m.nbytes for m in self.matrices())

    def summary(self):
        """A ``tmac.display.Report``: each kind of linear layer with its shape, format and bytes
        over all layers (a rich table in a terminal, HTML in Jupyter)."""
        from tmac.display import Report

        c = self.config
        rows = []
        for name in LINEARS:
            mats = [layer[name] for layer in self.layers]
            rows.append(_matrix_row(f"{name} x {len(mats)} layers", mats))
        rows.append(_matrix_row("head", [self.head]))
        title = (f"{c.name}: {c.n_layers} layers, hidden {c.dim}, FFN {c.ffn_dim}, {c.n_heads} heads "
                 f"({c.n_kv_heads} KV), vocab {c.vocab_size}; linear weights "
                 f"{self.weight_bytes() / 1e6:.1f} MB")
        return Report(title, SUMMARY_COLUMNS, rows)

    def __rich__(self):
        return self.summary().__rich__()

    def _repr_html_(self):
        return self.summary()._repr_html_()


SUMMARY_COLUMNS = [("matrix", "matrix", "{}"), ("shape", "shape (M x K)", "{}"),
                   ("format", "format", "{}"), ("bits", "bits/weight", "{:.2f}"),
                   ("mb", "MB", "{:.2f}")]


def _matrix_label(w):
    """How one matrix is stored: "f32", or its format's label (``"Q4_K"``, ``"affine 4-bit g32"``)."""
    if isinstance(w, np.ndarray):
        return "f32"
    if isinstance(w, list):
        return " + ".join(_matrix_label(p) for p in w)
    return w.format.label(w.bits, w.group_size, w.shape[1])


def _matrix_row(label, mats):
    """One summary row for matrices of one kind: float32 arrays, QuantizedWeights, or lists of
    parts; the formats they use, counted."""
    from collections import Counter

    parts = [p for m in mats for p in (m if isinstance(m, list) else [m])]
    m = sum(p.shape[0] for p in (mats[0] if isinstance(mats[0], list) else [mats[0]]))
    k = parts[0].shape[1]
    nbytes = sum(p.nbytes for p in parts)
    labels = Counter(_matrix_label(w) for w in mats)
    fmt = ", ".join(f"{n} x {lab}" if len(labels) > 1 else lab for lab, n in labels.items())
    return {"matrix": label, "shape": f"{m} x {k}", "format": fmt,
            "bits": 8 * nbytes / sum(p.shape[0] * p.shape[1] for p in parts), "mb": nbytes / 1e6}


LINEARS = ("qkv", "o", "gate_up", "down")


def layer_vectors(lw) -> dict:
    """A layer's float32 vectors as the runtime keeps them: the two norms and "qkv_bias", the
    Q, K and V biases end to end ((0,) where the architecture has none). ``lw``: a loader
    layer (biases "bq", "bk", "bv") or a prepared one."""
    from tmac.model.reference import qkv_bias

    bias = lw["qkv_bias"] if "qkv_bias" in lw else qkv_bias(lw)
    return {"attn_norm": np.asarray(lw["attn_norm"], np.float32),
            "ffn_norm": np.asarray(lw["ffn_norm"], np.float32),
            "qkv_bias": np.zeros(0, np.float32) if bias is None else np.asarray(bias, np.float32)}


def prepare(weights: LlamaWeights, fmt: ModelFormat, progress=None, matrix_formats=None,
            calibration=None) -> PreparedModel:
    """Requantize every linear layer of ``weights`` to ``fmt`` (f32: keep the floats), the head
    to ``head_format(fmt)``.

    ``matrix_formats`` {"<layer>.<linear>" or "head": ModelFormat} gives any matrix a format of
    its own (a width, group size or scheme; mixed precision); "3.down", "0.qkv", ...
    ``fmt.fit == "gptq"`` fits the layers by GPTQ (tmac.model.gptq) on ``calibration``, token
    ids (S, T) (tmac.model.calibration); the head keeps its format's own fit.
    ``progress(i, n)`` is called after each layer when given.
    """
    chosen = dict(matrix_formats or {})
    known = {"head"} | {f"{i}.{name}" for i in range(len(weights.layers)) for name in LINEARS}
    for key in chosen:
        if key not in known:
            raise ValueError(f"matrix_formats: unknown matrix {key!r}; expected 'head' or "
                             f"'<layer 0..{len(weights.layers) - 1}>.<{'|'.join(LINEARS)}>'")
    chosen.setdefault("head", head_format(fmt))
    if fmt.fit == "gptq":
        return _prepare_gptq(weights, fmt, calibration, progress, chosen)

    def q(w, f, where):
        if f.is_float:
            return np.ascontiguousarray(w, np.float32)
        try:
            return f.quantize(w)
        except ValueError as e:
            raise ValueError(f"matrix {where} ({w.shape[0]} x {w.shape[1]}) in format {f.label}: "
                             f"{e}") from None

    def stacked(ws, f, where):
        if f.is_float:
            return np.ascontiguousarray(np.vstack(ws), np.float32)
        return stack_rows([q(w, f, where) for w in ws])

    layers = []
    for i, lw in enumerate(weights.layers):
        f = {name: chosen.get(f"{i}.{name}", fmt) for name in LINEARS}
        layers.append({"qkv": stacked([lw["wq"], lw["wk"], lw["wv"]], f["qkv"], f"{i}.qkv"),
                       "o": q(lw["wo"], f["o"], f"{i}.o"),
                       "gate_up": stacked([lw["w_gate"], lw["w_up"]], f["gate_up"], f"{i}.gate_up"),
                       "down": q(lw["w_down"], f["down"], f"{i}.down"),
                       **layer_vectors(lw)})
        if progress:
            progress(i + 1, len(weights.layers) + 1)
    head = q(weights.output, chosen["head"], "head")
    if progress:
        progress(len(weights.layers) + 1, len(weights.layers) + 1)
    return PreparedModel(weights.config, fmt, as_runtime_table(weights.embed),
                         weights.output_norm.astype(np.float32), head, layers)


def _prepare_gptq(weights, fmt, calibration, progress, chosen):
    """prepare() for fmt.fit == "gptq": every layer's matrices in the affine form GPTQ fitted,
    each at its width in ``chosen`` (matrix name -> affine ModelFormat; fmt for the rest)."""
    from tmac.formats import QuantizedWeight
    from tmac.model import gptq

    if calibration is None:
        raise ValueError("fit 'gptq' needs calibration token ids (tmac.model.calibration)")
    for key, f in chosen.items():
        if key != "head" and f.scheme != "affine":
            raise ValueError(f"matrix_formats: {key} is {f.label}; fit 'gptq' gives w1..w8 "
                             f"(affine) only")

    def weight(name, codes, scales, offsets):
        return QuantizedWeight(codes, scales, offsets, chosen.get(name, fmt).bits,
                               codes.shape[1] // scales.shape[1], "affine")

    fitted = gptq.fit_layers(weights, fmt, calibration, progress=progress,
                             matrix_formats={k: f for k, f in chosen.items() if k != "head"})
    layers = [{**{name: weight(f"{i}.{name}", *params) for name, params in f.items()},
               **layer_vectors(lw)}
              for i, (f, lw) in enumerate(zip(fitted, weights.layers))]
    head = chosen["head"].quantize(weights.output)
    return PreparedModel(weights.config, fmt, as_runtime_table(weights.embed),
                         weights.output_norm.astype(np.float32), head, layers)


def prepare_native(weights: LlamaWeights) -> PreparedModel:
    """The model in its file's own types (weights from ``loader.load(native=True)``: each linear
    a QuantizedWeight of tmac.formats.ggml, or float32 for a float type); Q/K/V and gate/up are
    stacked where their types agree, else kept as a list of parts run one after the other."""
    from tmac.model.formats import parse

    def stacked(parts):
        if all(isinstance(p, np.ndarray) for p in parts):
            return np.ascontiguousarray(np.vstack(parts), np.float32)
        if all(not isinstance(p, np.ndarray) for p in parts) and \
                len({(p.scheme, p.bits, p.group_size) for p in parts}) == 1:
            return stack_rows(parts)
        return list(parts)

    layers = [{"qkv": stacked([lw["wq"], lw["wk"], lw["wv"]]), "o": lw["wo"],
               "gate_up": stacked([lw["w_gate"], lw["w_up"]]), "down": lw["w_down"],
               **layer_vectors(lw)} for lw in weights.layers]
    return PreparedModel(weights.config, parse("native"),
                         as_runtime_table(weights.embed),
                         weights.output_norm.astype(np.float32), weights.output, layers)


def _padded64(m):
    return -(-m // 64) * 64


def _rows(w):
    return w.shape[0]


def llama_graph(c: LlamaConfig, table_dims: dict | None = None) -> Graph:
    """The tensors of one forward step and the steps that use them, in order.

    Symbols: batch, seq_len (new tokens), past_len (tokens already cached), out_len (rows of
    logits wanted: 1 when generating, seq_len for perplexity). The layer steps repeat per layer;
    every intermediate of a layer is dead by the layer's end, so one layer's plan serves all.

    ``table_dims`` {linear: (groups, n_act, n_blocks)} adds the int8 table buffers of the fused
    path (tables, table scales, block sums, halves) for each linear layer.
    """
    batch, seq_len, past_len, out_len = sym("batch"), sym("seq_len"), sym("past_len"), sym("out_len")
    tokens, out_rows = batch * seq_len, batch * out_len
    g = Graph()
    d, f = c.dim, c.ffn_dim
    g.tensor("x", (tokens, d))                                 # residual stream
    g.tensor("h", (tokens, d))                                 # normed input of a linear
    g.tensor("qkv", (tokens, _padded64(d + 2 * c.kv_dim)))
    g.tensor("scores", (batch * c.n_heads, seq_len, past_len + seq_len))
    g.tensor("attn", (tokens, d))
    g.tensor("o", (tokens, _padded64(d)))
    g.tensor("gate_up", (tokens, _padded64(2 * f)))
    g.tensor("act", (tokens, f))
    g.tensor("down", (tokens, _padded64(d)))
    g.tensor("h_out", (out_rows, d))
    g.tensor("logits", (out_rows, _padded64(c.vocab_size)))
    tabs = {}
    for name, dims in (table_dims or {}).items():
        groups, n_act, n_blocks = dims
        rows = out_rows if name == "head" else tokens
        tabs[name] = (f"tables_{name}", f"tscale_{name}", f"xsum_{name}", f"half_{name}")
        g.tensor(tabs[name][0], (rows, groups, 16), "int8")
        g.tensor(tabs[name][1], (rows, n_act))
        g.tensor(tabs[name][2], (rows, n_blocks))
        g.tensor(tabs[name][3], (rows, n_blocks))

    def linear(name, src, dst):
        if name in tabs:
            g.step(f"{name}_tables", reads=(src,), writes=tabs[name])
            g.step(f"{name}_lookup", reads=tabs[name], writes=(dst,))
        else:
            g.step(f"{name}_matmul", reads=(src,), writes=(dst,))

    g.step("embed", writes=("x",))
    if tabs:
        # the fused path's steps: each small step builds the next linear's tables in the same
        # parallel loop over rows (tmac.model.fused), and the FFN residual of a layer is added
        # by the next layer's first step, so "down" lives across the loop (read before written)
        t = {name: tabs[name] for name in tabs}
        g.step("residual_attn_norm_tables", reads=("x", "down"), writes=("x", "h") + t["qkv"])
        g.step("qkv_lookup", reads=t["qkv"], writes=("qkv",))
        g.step("rope_store_kv", reads=("qkv",), writes=("qkv",))
        g.step("attention_tables", reads=("qkv",), writes=("scores", "attn") + t["o"])
        g.step("o_lookup", reads=t["o"], writes=("o",))
        g.step("residual_ffn_norm_tables", reads=("x", "o"), writes=("x", "h") + t["gate_up"])
        g.step("gate_up_lookup", reads=t["gate_up"], writes=("gate_up",))
        g.step("swiglu_tables", reads=("gate_up",), writes=("act",) + t["down"])
        g.step("down_lookup", reads=t["down"], writes=("down",))
        g.step("residual_ffn", reads=("x", "down"), writes=("x",))
        g.step("output_norm", reads=("x",), writes=("h_out",))
        linear("head", "h_out", "logits")
        return g
    g.step("attn_norm", reads=("x",), writes=("h",))
    linear("qkv", "h", "qkv")
    g.step("rope_store_kv", reads=("qkv",), writes=("qkv",))
    g.step("attention", reads=("qkv",), writes=("scores", "attn"))
    linear("o", "attn", "o")
    g.step("residual_attn", reads=("x", "o"), writes=("x",))
    g.step("ffn_norm", reads=("x",), writes=("h",))
    linear("gate_up", "h", "gate_up")
    g.step("swiglu", reads=("gate_up",), writes=("act",))
    linear("down", "act", "down")
    g.step("residual_ffn", reads=("x", "down"), writes=("x",))
    g.step("output_norm", reads=("x",), writes=("h_out",))
    linear("head", "h_out", "logits")
    return g


class Runtime:
    """Runs a PreparedModel token by token with a sub-tensor KV cache.

    max_ctx     positions the KV cache holds
    max_seq     tokens per forward call (longer inputs are processed in chunks of max_seq)
    matmul      "lut" (tmac LUT kernels), "dequant" (dequantize-then-multiply baseline) or
                "reference" (tmac's numpy specification; slow) -- quantized formats only
    threads     Numba threads (None: Numba's setting)
    fused       None (automatic), True (require) or False (per-layer path)
    lut         "int8" (T-MAC's quantized tables, the default) or "float32" (exact tables: no
                table error, per-layer path, slower)
    priority    None (leave the process as it is), "normal" or "low" (tmac.priority: every
                thread of the process at the lowest scheduling priority, for good; results
                are the same)
    act_group_size  activations per int8 table scale (ACT_GROUP_SIZE; where it does not nest
                with a matrix's weight group, that matrix uses its weight group; None: always
                the weight group, as tmac.matmul's default)
    """

    def __init__(self, model: PreparedModel, max_ctx: int = 512, max_seq: int = 128,
                 matmul: str = "lut", threads: int | None = None, fused: bool | None = None,
                 isa: str | None = None, act_group_size: int | None = ACT_GROUP_SIZE,
                 lut: str = "int8", priority: str | None = None):
        from tmac.kernels import dispatch
        from tmac.priority import set_priority
        from tmac.reference.lut_matmul import LUT_MODES

        if lut not in LUT_MODES:
            raise ValueError(f"lut must be one of {LUT_MODES}, got {lut!r}")
        self.act_group_size, self.lut = act_group_size, lut

        c = self.config = model.config
        self.model, self.threads, self.isa = model, threads, isa
        if matmul not in MATMULS:
            raise ValueError(f"matmul must be one of {MATMULS}, got {matmul!r}")
        self.matmul = "float" if model.format.is_float else matmul
        self.max_ctx, self.max_seq = int(max_ctx), max(1, min(int(max_seq), int(max_ctx)))
        if not 1 <= self.max_ctx <= c.context_length:
            raise ValueError(f"context {self.max_ctx} is outside what {c.name} supports "
                             f"(1..{c.context_length} tokens, its context_length)")
        self._check_memory()
        if priority is not None:
            set_priority(priority)
        self.cache = KVCache(c.n_layers, c.n_kv_heads, c.head_dim, self.max_ctx)
        self.cos, self.sin = rope_tables(self.max_ctx, c.rope_dim, c.rope_base)
        self.kernel_path = dispatch.choose("lut_int8", isa)
        can_fuse = (self.matmul == "lut" and lut == "int8"
                    and c.dim % 16 == 0 and c.ffn_dim % 16 == 0 and self._plans_aligned())
        if fused and not can_fuse:
            raise ValueError("the fused path needs a quantized format on the LUT kernels with "
                             "int8 tables, dims that are multiples of 16 and a group size that "
                             "is a multiple of 16")
        self.fused = can_fuse if fused is None else bool(fused)
        table_dims = self._setup_fused() if self.fused else None
        self.graph = llama_graph(c, table_dims)
        self.plan = plan(self.graph, {"batch": 1, "seq_len": self.max_seq,
                                      "past_len": self.max_ctx - 1, "out_len": self.max_seq})
        self.arena = self.plan.allocate()
        self._past_dependent = tuple(n for n, t in self.graph.tensors.items()
                                     if any("past_len" in Expr.lift(d).symbols for d in t.shape))
        self._views = {}
        self.ids = np.zeros(self.max_seq, np.int64)

    def _check_memory(self):
        """Refuse, before allocating, a KV cache and logits that cannot fit in memory."""
        from tmac import validation

        c = self.config
        kv = 2 * c.n_layers * c.n_kv_heads * self.max_ctx * c.head_dim * 4
        logits = self.max_seq * (-(-c.vocab_size // 64) * 64) * 4
        scores = c.n_heads * self.max_seq * self.max_ctx * 4
        validation.check_memory("the context", kv + logits + scores,
                                f"KV cache and buffers for {self.max_ctx} tokens")

    # ------------------------------------------------------------------ state
    @property
    def pos(self) -> int:
        """Tokens in the context so far."""
        return self.cache.length

    def reset(self):
        self.cache.reset()

    def views(self, seq_len, past_len, out_len):
        """The planned buffers resolved for these lengths. Views of shapes that do not depend
        on past_len are made once per (seq_len, out_len); the rest (the attention scores) per
        call: a view costs no copy and no data allocation."""
        key = (seq_len, out_len)
        fixed = self._views.get(key)
        env = dict(batch=1, seq_len=seq_len, past_len=past_len, out_len=out_len)
        if fixed is None:
            if len(self._views) > 64:
                self._views.clear()
            fixed = self._views[key] = self.plan.views(self.arena, **env)
        v = dict(fixed)
        v.update(self.plan.views(self.arena, only=self._past_dependent, **env))
        return v

    # ------------------------------------------------------------------ forward
    def forward(self, tokens, all_logits: bool = False) -> np.ndarray:
        """Append ``tokens`` to the context; logits (1 or T, vocab) of the last / every token.

        Inputs longer than max_seq run in chunks; with all_logits the chunks' logits are
        concatenated (a new array), else the result is a view into the arena.
        """
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        if tokens.size == 0:
            raise ValueError("no tokens to run")
        if tokens.min() < 0 or tokens.max() >= self.config.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size})")
        self.cache.check_room(self.pos, tokens.size)
        from tmac.kernels import num_threads

        chunks = []
        with num_threads(self.threads):
            for start in range(0, tokens.size, self.max_seq):
                chunk = tokens[start:start + self.max_seq]
                out = self._step(chunk, all_logits)
                if all_logits:
                    chunks.append(out.copy() if tokens.size > self.max_seq else out)
        return np.concatenate(chunks) if all_logits and len(chunks) > 1 else \
            (chunks[0] if all_logits else out)

    def _step(self, tokens, all_logits):
        c, t, pos = self.config, tokens.size, self.pos
        out_len = t if all_logits else 1
        v = self.views(t, pos, out_len)
        ids = self.ids[:t]
        ids[:] = tokens
        if isinstance(self.model.embed, BlockEmbedding):
            self.model.embed.rows_into(ids, v["x"])
        else:
            ops.gather_rows(self.model.embed, ids, v["x"])
        if self.fused:
            self._layers_fused(v, pos)
        else:
            self._layers_python(v, pos)
        ops.rms_norm(v["x"], t - out_len, out_len, c.dim, self.model.output_norm, c.norm_eps,
                     v["h_out"])
        self._linear("head", self.model.head, v["h_out"], v["logits"], v)
        self.cache.length = pos + t
        return v["logits"][:, :c.vocab_size]

    def _layers_python(self, v, pos):
        import numba

        c, t = self.config, v["x"].shape[0]
        kv = self.cache.storage
        for i, lw in enumerate(self.model.layers):
            ops.rms_norm(v["x"], 0, t, c.dim, lw["attn_norm"], c.norm_eps, v["h"])
            self._linear("qkv", lw["qkv"], v["h"], v["qkv"], v)
            ops.add_bias(v["qkv"], t, lw["qkv_bias"])
            ops.rope(v["qkv"], t, 0, c.n_heads, c.head_dim, c.rope_dim, self.cos, self.sin, pos,
                     c.rope_neox)
            ops.rope(v["qkv"], t, c.dim, c.n_kv_heads, c.head_dim, c.rope_dim, self.cos, self.sin,
                     pos, c.rope_neox)
            ops.store_kv(v["qkv"], t, c.dim, c.n_kv_heads, c.head_dim, kv[i], pos)
            parallel = t > 1 and self.matmul != "float" and numba.get_num_threads() > 1
            attention = ops.attention_parallel if parallel else ops.attention
            attention(v["qkv"], t, c.n_heads, c.n_kv_heads, c.head_dim, kv[i], pos,
                      v["scores"], v["attn"])
            self._linear("o", lw["o"], v["attn"], v["o"], v)
            ops.add_into(v["x"], t, c.dim, v["o"])
            ops.rms_norm(v["x"], 0, t, c.dim, lw["ffn_norm"], c.norm_eps, v["h"])
            self._linear("gate_up", lw["gate_up"], v["h"], v["gate_up"], v)
            ops.swiglu(v["gate_up"], t, c.ffn_dim, v["act"])
            self._linear("down", lw["down"], v["act"], v["down"], v)
            ops.add_into(v["x"], t, c.dim, v["down"])

    def _linear(self, name, w, xin, out, v):
        """out[:, :M] = xin @ W.T with this runtime's matmul (a float matrix: numpy's; a list of
        parts: each into its own columns, one after the other)."""
        if isinstance(w, list):
            at = 0
            for part in w:
                self._linear(name, part, xin, out[:, at:], v)
                at += part.shape[0]
            return
        m = w.shape[0]
        if self.matmul == "float" or isinstance(w, np.ndarray):
            np.matmul(xin, w.T, out=out[:, :m])
        elif name in getattr(self, "_fw", {}):
            from tmac.model import fused

            import numba

            weight, tiles = self._fw[name]
            fused.linear(xin, weight, self._buffers(name, v), out, tiles, numba.get_num_threads(),
                         self._isa_tag)
        elif self.matmul == "lut" and w.format.has_lut_path:
            from tmac import kernels

            out[:, :m] = kernels.lut_matmul(w.packed, None, None, w.bits, xin, self._act(w),
                                            self.lut, isa=self.isa)
        elif self.matmul == "lut":                   # a format without a LUT path (e2m1)
            import tmac

            out[:, :m] = tmac.matmul(w, xin)
        elif self.matmul == "dequant":
            import tmac

            out[:, :m] = tmac.dequant_matmul(w, xin)
        elif w.format.has_lut_path:
            import tmac

            out[:, :m] = tmac.matmul(w, xin, backend="reference", act_group_size=self._act(w),
                                     lut=self.lut)
        else:
            import tmac

            out[:, :m] = tmac.matmul(w, xin, backend="reference")

    def _act(self, w):
        return _act(w, self.act_group_size)

    # ------------------------------------------------------------------ fused path
    def _plans_aligned(self):
        """Whether every matrix can run fused: a LUT path, a unit-aligned block plan, and one
        parameter form per linear kind over the layers (tmac.model.fused.Stack)."""
        from tmac.kernels.lut import plan as lut_plan
        from tmac.model.fused import param_form

        for name in LINEARS:
            mats = [l[name] for l in self.model.layers]
            if not all(hasattr(w, "format") and w.format.has_lut_path
                       and lut_plan(w.shape[1], w.n_groups, self._act(w)).aligned for w in mats):
                return False
            if len({(param_form(w.packed.scales_t), param_form(w.packed.zeros_t))
                    for w in mats}) > 1:
                return False                # one Stack holds one parameter form
        return True

    def _setup_fused(self):
        """Each linear kind's packed weights over layers in one Stack (widths and group sizes
        may differ per layer); the head's Linear; block plans; tiles; table buffer sizes."""
        import numba

        from tmac.kernels import by_isa
        from tmac.kernels.lut import plan as lut_plan
        from tmac.kernels.tiles import default_tiles_per_task
        from tmac.model.fused import Linear, plain, stack

        threads = self.threads or numba.get_num_threads()
        self._isa_tag = by_isa.tag(self.kernel_path)
        self._fw, dims = {}, {}
        head = self.model.head
        fused_head = (not isinstance(head, np.ndarray) and head.format.has_lut_path
                      and lut_plan(head.shape[1], head.n_groups, self._act(head)).aligned)
        for name in LINEARS + (("head",) if fused_head else ()):
            mats = [head] if name == "head" else [l[name] for l in self.model.layers]
            plans = [lut_plan(w.shape[1], w.n_groups, self._act(w)) for w in mats]
            if name == "head":
                w, p = mats[0].packed, plans[0]
                weight = Linear(w.data, w.scales_t, w.zeros_t, np.int64(p.act_group_size), p.blocks)
            else:
                weight = stack([w.packed for w in mats], plans)
            tiles = default_tiles_per_task(mats[0].packed.data.shape[0], threads)
            self._fw[name] = (plain(weight), tiles)
            dims[name] = (plans[0].k_units // 4, max(p.n_act_groups for p in plans),
                          max(len(p.starts) for p in plans))
        return dims

    def _buffers(self, name, v):
        """A linear's table buffers as a plain tuple (fused.Tables order)."""
        return tuple(v[f"{k}_{name}"] for k in ("tables", "tscale", "xsum", "half"))

    def _layers_fused(self, v, pos):
        import numba

        from tmac.model import fused

        if not hasattr(self, "_fused_model"):
            c = self.config
            layers = self.model.layers
            self._fused_model = fused.plain(fused.FusedModel(
                (c.n_layers, c.dim, c.ffn_dim, c.n_heads, c.n_kv_heads, c.head_dim, c.rope_dim,
                 c.rope_neox), np.float32(c.norm_eps),
                np.stack([l["attn_norm"] for l in layers]), np.stack([l["ffn_norm"] for l in layers]),
                np.stack([l["qkv_bias"] for l in layers]), self.cos, self.sin,
                *(fused.Stack(*self._fw[n][0]) for n in LINEARS),
                tuple(self._fw[n][1] for n in LINEARS), self._isa_tag))
        step = (v["x"], v["h"], v["qkv"], v["scores"], v["attn"], v["o"], v["gate_up"], v["act"],
                v["down"], self.cache.storage, *(self._buffers(n, v) for n in LINEARS))
        fused.layers(self._fused_model, step, pos, numba.get_num_threads())


def _act(w, act_group_size=None):
    """The activation group the LUT kernels use for ``w``: ``act_group_size`` where it nests
    with the weight group, else the weight group (tmac's API default)."""
    from tmac import validation

    try:
        return validation.resolve_act_group_size(act_group_size, w.group_size, w.shape[1])
    except ValueError:
        return validation.resolve_act_group_size(None, w.group_size, w.shape[1])
