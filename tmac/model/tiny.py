"""A tiny random llama (or qwen2) model written as a GGUF file: the tests' stand-in for a real download.

    write_tiny_llama(path)   -> path of a ~100 KB GGUF with a byte-level BPE tokenizer

It exercises everything a real file does: llama metadata, a GPT-2 style vocabulary with merges
and control tokens (``<|im_start|>``, ``<|im_end|>``), a ChatML chat template, and weights in
several tensor types (F32, F16, Q8_0, Q4_0, Q4_1 by default; ``types`` picks any GGML type,
quantized by tmac.reference.ggml, or random bytes for a type tmac does not read). Dimensions are multiples of 64 so
that the fused runtime path runs too. Needs the ``model`` extra (gguf).
"""
from __future__ import annotations

import numpy as np

CHAT_TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                 "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "Ġ a", "i n", "Ġ s", "e r", "o n", "Ġ w", "r e", "a n", "Ġ o"]


def byte_tokens():
    """GPT-2's printable stand-ins for the 256 bytes, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def vocabulary():
    """(tokens, token types, merges): specials first, then bytes, then merged tokens."""
    tokens = SPECIAL + byte_tokens()
    for m in MERGES:
        tokens.append(m.replace(" ", ""))
    types = [3] * len(SPECIAL) + [1] * (len(tokens) - len(SPECIAL))
    return tokens, types, MERGES


def write_tiny_llama(path, seed=0, n_layers=2, dim=64, ffn_dim=128, n_heads=4, n_kv_heads=2,
                     context_length=2048, types=None, architecture="llama", qkv_bias=None,
                     untied=False):
    """Write the model; ``types`` {tensor-name suffix: GGML type name} overrides the default
    mix. ``architecture="qwen2"`` writes a Qwen2 file: Q/K/V biases, the "qwen2"
    pre-tokenizer (``qkv_bias`` forces the biases on or off in any architecture); ``untied``
    adds an output head of its own. Returns ``path``."""
    import gguf
    from gguf import GGMLQuantizationType as T

    from tmac.reference.ggml import BLOCK_TYPES

    rng = np.random.default_rng(seed)
    tokens, token_types, merges = vocabulary()
    vocab = len(tokens)
    head_dim = dim // n_heads
    kv_dim = n_kv_heads * head_dim
    mix = {"attn_q.weight": "F16", "attn_k.weight": "Q8_0", "attn_v.weight": "Q4_0",
           "attn_output.weight": "Q4_1", "ffn_gate.weight": "F32", "ffn_up.weight": "Q8_0",
           "ffn_down.weight": "F16", "token_embd.weight": "Q8_0"}
    mix.update(types or {})

    w = gguf.GGUFWriter(str(path), architecture)
    w.add_name("tiny-llama")
    w.add_block_count(n_layers)
    w.add_context_length(context_length)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(ffn_dim)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if architecture == "qwen2" else "smollm")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    def add(name, array):
        kind = next((t for suffix, t in mix.items() if name.endswith(suffix)), "F32")
        array = np.ascontiguousarray(array, np.float32)
        if kind == "F32":
            w.add_tensor(name, array)
        elif kind == "F16":
            w.add_tensor(name, array.astype(np.float16))
        elif kind in BLOCK_TYPES:                       # tmac's own quantizer of the type
            qtype = getattr(T, kind)
            raw = BLOCK_TYPES[kind].quantize(array.reshape(-1)).reshape(array.shape[0], -1)
            w.add_tensor(name, raw, raw_dtype=qtype)
        else:                                           # a type tmac does not read: its size
            qtype = getattr(T, kind)
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            raw = rng.integers(0, 256, (array.shape[0], array.shape[1] // block * size), np.uint8)
            w.add_tensor(name, raw, raw_dtype=qtype)

    def mat(m, k, scale=None):
        return rng.standard_normal((m, k)).astype(np.float32) * np.float32(scale or k ** -0.5)

    add("token_embd.weight", mat(vocab, dim, 1.0))
    if untied:
        add("output.weight", mat(vocab, dim))
    if qkv_bias is None:
        qkv_bias = architecture == "qwen2"
    add("output_norm.weight", 1 + 0.1 * rng.standard_normal(dim))
    for i in range(n_layers):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", 1 + 0.1 * rng.standard_normal(dim))
        add(p + "ffn_norm.weight", 1 + 0.1 * rng.standard_normal(dim))
        add(p + "attn_q.weight", mat(dim, dim))
        add(p + "attn_k.weight", mat(kv_dim, dim))
        add(p + "attn_v.weight", mat(kv_dim, dim))
        if qkv_bias:
            for name, n in (("attn_q.bias", dim), ("attn_k.bias", kv_dim), ("attn_v.bias", kv_dim)):
                add(p + name, 0.5 * rng.standard_normal(n))
        add(p + "attn_output.weight", mat(dim, dim))
        add(p + "ffn_gate.weight", mat(ffn_dim, dim))
        add(p + "ffn_up.weight", mat(ffn_dim, dim))
        add(p + "ffn_down.weight", mat(dim, ffn_dim))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
