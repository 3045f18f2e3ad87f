"""SmolLM2-135M-Instruct, the real model: run when it has been fetched (``tmac fetch smollm2``;
.ci/run does so), skipped otherwise. Nothing here downloads.

Kept cheap for CI: one GGUF load per module, formats whose quantization is fast (f32, w4 sym,
ternary), short prompts.
"""
import numpy as np
import pytest

pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")
pytest.importorskip("tokenizers", reason="the 'model' extra (tokenizers) is not installed")

from tmac.model import fetch, formats, generate, reference, runtime  # noqa: E402

pytestmark = pytest.mark.skipif(not fetch.is_fetched("smollm2"),
                                reason="SmolLM2 not fetched (run: tmac fetch smollm2)")

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, there was a"]


@pytest.fixture(scope="module")
def gg():
    from tmac.model import loader

    return loader.load(fetch.cached_path("smollm2"))


@pytest.fixture(scope="module")
def tok(gg):
    from tmac.model.tokenizer import GGUFTokenizer

    return GGUFTokenizer.from_metadata(gg.metadata)


def test_config_and_tensor_types(gg):
    c = gg.config
    assert (c.n_layers, c.dim, c.ffn_dim, c.n_heads, c.n_kv_heads, c.vocab_size) == \
        (30, 576, 1536, 9, 3, 49152)
    assert c.rope_base == 100000.0 and gg.weights.tied
    kinds = set(gg.weights.source_types.values())
    assert kinds == {"Q4_1", "Q8_0", "F32"}


def test_tokenizer_on_known_text(tok):
    assert tok.encode("Hello, world! 12345") == [19556, 28, 905, 17, 216, 33, 34, 35, 36, 37]
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert chat.startswith("<|im_start|>system\n") and chat.endswith("<|im_start|>assistant\n")
    ids = tok.encode(chat)
    assert ids[0] == tok.tokenizer.token_to_id("<|im_start|>") and tok.decode(ids) == chat


def test_f32_runtime_matches_reference_and_greedy_tokens_agree(gg, tok):
    """Float weights: logits within 1e-3 of the largest logit; 8 greedy tokens identical."""
    pm = runtime.prepare(gg.weights, formats.parse("f32"))
    rt = runtime.Runtime(pm, max_ctx=64, max_seq=32)
    for prompt in PROMPTS:
        ids = tok.encode(prompt)
        cache = reference.ConcatKVCache(gg.config.n_layers)
        ref = reference.forward(gg.weights, ids, cache, 0)
        rt.reset()
        got = rt.forward(ids, all_logits=True).copy()
        np.testing.assert_allclose(got, ref, atol=1e-3 * np.abs(ref).max(), rtol=0)
        ours, theirs, pos = [], [], len(ids)
        a, b = got[-1], ref[-1]
        for _ in range(8):
            ours.append(int(a.argmax()))
            theirs.append(int(b.argmax()))
            a = rt.forward([ours[-1]])[-1]
            b = reference.forward(gg.weights, [theirs[-1]], cache, pos)[-1]
            pos += 1
        assert ours == theirs, (prompt, ours, theirs)


@pytest.mark.parametrize("fmt,sym", [("w4", True)])
def test_quantized_model_answers_and_is_deterministic(gg, tok, fmt, sym):
    pm = runtime.prepare(gg.weights, formats.parse(fmt, 64, sym))
    rt = runtime.Runtime(pm, max_ctx=96)
    ids = tok.encode(tok.apply_chat_template([{"role": "user",
                                               "content": "What is the capital of France?"}]))
    a = generate.generate(rt, tok, ids, max_tokens=24)
    b = generate.generate(rt, tok, ids, max_tokens=24)
    assert a.tokens == b.tokens and "Paris" in a.text
    if rt.fused:                                  # the per-layer path gives the same tokens
        layers = runtime.Runtime(pm, max_ctx=96, fused=False)
        assert generate.generate(layers, tok, ids, max_tokens=24).tokens == a.tokens


def test_perplexity_on_the_shipped_text(gg, tok):
    """f32 < ternary; values recorded in docs/model.md (full text); here 2 chunks."""
    from pathlib import Path

    from tmac.model import texts

    text = texts.read()
    ids = tok.encode(text)[:512]
    ppl = {}
    for name in ("f32", "ternary"):
        rt = runtime.Runtime(runtime.prepare(gg.weights, formats.parse(name)), max_ctx=256, max_seq=256)
        ppl[name] = generate.perplexity(rt, ids, 256).perplexity
    assert 5 < ppl["f32"] < 40 and ppl["ternary"] > ppl["f32"]


def test_affine_groups_of_32_reproduce_every_q4_1_tensor_bit_for_bit(gg):
    """Every Q4_1 matrix of the file, dequantized by gguf and requantized to affine 4-bit groups
    of 32 (the minmax fit alone suffices), dequantizes to gguf's values exactly."""
    from tmac.model.loader import LAYER_TENSORS
    from tmac.reference import affine

    checked = 0
    for i, layer in enumerate(gg.weights.layers):
        for ours, name in LAYER_TENSORS.items():
            if gg.weights.source_types[f"blk.{i}.{name}"] != "Q4_1":
                continue
            w = np.ascontiguousarray(layer[ours], np.float32)
            codes, scales, offsets = affine.quantize(w, 4, 32, fit="minmax")
            back = affine.dequantize(codes, scales, offsets)
            assert np.array_equal(back.view(np.uint32), w.view(np.uint32)), (i, name)
            checked += 1
    assert checked == 210


def test_native_runs_the_files_types_within_half_a_percent_of_f32(gg, tok):
    """--format native (Q4_1 layers, Q8_0 head, as stored): perplexity within 0.5 % of the same
    file dequantized to float32 (the int8 activation tables are the only difference)."""
    from tmac.model import loader, texts

    native = loader.load(fetch.cached_path("smollm2"), native=True)
    assert {w.scheme for l in native.weights.layers for w in (l["wq"], l["w_down"])} == {"q4_1"}
    assert native.weights.output.scheme == "q8_0"
    ids = tok.encode(texts.read())[:4 * 256]
    f32 = generate.perplexity(runtime.Runtime(runtime.prepare(gg.weights, formats.parse("f32")),
                                              max_ctx=256, max_seq=256), ids, 256).perplexity
    ours = generate.perplexity(runtime.Runtime(runtime.prepare_native(native.weights),
                                               max_ctx=256, max_seq=256), ids, 256).perplexity
    assert ours / f32 < 1.005, (ours, f32)
