"""GPTQ over a whole model (tmac.model.gptq) and its self-generated calibration
(tmac.model.calibration), on the tiny model the tests write themselves."""
import numpy as np
import pytest

pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")

from tmac.formats import QuantizedWeight  # noqa: E402
from tmac.model import calibration, formats, loader, runtime, tiny  # noqa: E402
from tmac.model import gptq as model_gptq  # noqa: E402
from tmac.model import reference as spec  # noqa: E402
from tmac.reference import affine, gptq  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return loader.load(tiny.write_tiny_llama(tmp_path_factory.mktemp("gptq") / "tiny.gguf"))


def test_the_first_layer_is_gptq_of_its_own_inputs(model):
    """Layer 0's Q/K/V see rms_norm(embedding) whatever is quantized: the pipeline's fit must be
    exactly tmac.reference.gptq on the Hessian of those inputs, act-order, static groups,
    the model's refits."""
    c = model.config
    fmt = formats.parse("w3", 16)
    ids = np.random.default_rng(0).integers(3, c.vocab_size, (4, 24))
    pm = runtime.prepare(model.weights, formats.ModelFormat(
        fmt.name, fmt.bits, fmt.group_size, fmt.scheme, head=fmt.head, fit="gptq"),
        calibration=ids)
    lw = model.weights.layers[0]
    h = spec.rms_norm(model.weights.embed[ids].astype(np.float32), lw["attn_norm"], c.norm_eps)
    want = gptq.gptq(np.vstack([lw["wq"], lw["wk"], lw["wv"]]),
                     gptq.hessian(h.reshape(-1, c.dim)), 3, 16, act_order=True, damp=0.01,
                     refits=model_gptq.REFITS)
    qkv = pm.layers[0]["qkv"]
    assert isinstance(qkv, QuantizedWeight) and qkv.scheme == "affine" and qkv.bits == 3
    assert np.array_equal(qkv.codes, want[0])
    assert np.array_equal(qkv.scales, want[1]) and np.array_equal(qkv.zeros, want[2])
    for layer in pm.layers:
        for name in ("qkv", "o", "gate_up", "down"):
            assert layer[name].bits == 3 and layer[name].group_size == 16
    # the fitted model runs, and its fused path equals the reference matmul bit for bit
    spec_rt = runtime.Runtime(pm, max_ctx=32, max_seq=16, matmul="reference", fused=False)
    fused = runtime.Runtime(pm, max_ctx=32, max_seq=16)
    assert np.array_equal(fused.forward(list(range(3, 15)), all_logits=True),
                          spec_rt.forward(list(range(3, 15)), all_logits=True))


def test_gptq_is_a_fit_of_w1_to_w8_only():
    fmt = formats.parse("w3", 32, fit="gptq")
    assert (fmt.scheme, fmt.fit, fmt.head.fit) == ("affine", "gptq", "lsq")   # head: its own fit
    assert fmt.label == "w3 (g32, gptq), head w8 (g32)"
    assert "gptq" in formats.fit_choices()
    with pytest.raises(ValueError, match="applies to w1..w8"):
        formats.parse("w3", 32, sym=True, fit="gptq")
    with pytest.raises(ValueError, match="fit"):
        formats.parse("ternary", fit="gptq")


def test_gptq_needs_calibration(model):
    fmt = formats.parse("w3", 16)
    with pytest.raises(ValueError, match="needs calibration"):
        runtime.prepare(model.weights, formats.ModelFormat(
            fmt.name, fmt.bits, fmt.group_size, fmt.scheme, fit="gptq"))


class _UniformRuntime:
    """Equal logits for every token: the sampler's draws are then the seed's alone."""

    def __init__(self, vocab):
        self.vocab, self.calls = vocab, 0

    def reset(self):
        pass

    def forward(self, tokens):
        self.calls += 1
        return np.zeros((1, self.vocab), np.float32)


def test_self_generated_sequences_start_at_bos_and_follow_the_seed():
    a = calibration.sample_sequences(_UniformRuntime(50), 1, 3, 8, seed=7)
    b = calibration.sample_sequences(_UniformRuntime(50), 1, 3, 8, seed=7)
    c = calibration.sample_sequences(_UniformRuntime(50), 1, 3, 8, seed=8)
    assert a.shape == (3, 8) and a.dtype == np.int64 and (a[:, 0] == 1).all()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0 <= a.min() and a.max() < 50 and len(np.unique(a[:, 1:])) > 5


def test_calibration_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path / "cache"))
    path = tiny.write_tiny_llama(tmp_path / "tiny.gguf")
    first = calibration.self_generated(path, n_sequences=2, length=6, seed=3)
    assert first.shape == (2, 6)

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled again instead of reading the cache")

    monkeypatch.setattr(calibration, "sample_sequences", no_sampling)
    assert np.array_equal(calibration.self_generated(path, n_sequences=2, length=6, seed=3), first)
    with pytest.raises(ValueError, match="at least 1 sequence of 2 tokens"):
        calibration.self_generated(path, n_sequences=0, length=6)


def test_fitted_weights_keep_the_affine_contract(model):
    """Every fitted matrix dequantizes as affine says (codes in range, float16 parameters)."""
    fmt = formats.parse("w2", 32)
    ids = np.random.default_rng(1).integers(3, model.config.vocab_size, (2, 16))
    pm = runtime.prepare(model.weights, formats.ModelFormat(
        fmt.name, fmt.bits, fmt.group_size, fmt.scheme, head=fmt.head, fit="gptq"),
        calibration=ids)
    for layer in pm.layers:
        for name in ("qkv", "o", "gate_up", "down"):
            w = layer[name]
            assert int(w.codes.max()) < 4
            assert np.array_equal(w.scales.astype(np.float16).astype(np.float32), w.scales)
            assert np.array_equal(w.dequantize(), affine.dequantize(w.codes, w.scales, w.zeros))


def test_batched_attention_equals_the_reference_per_sequence(model):
    """The fit's attention (every sequence and head in matrix products) is the reference's
    causal grouped-query attention, sequence by sequence, to float32 rounding."""
    from tmac.model.gptq import _attention

    c = model.config
    lw = model.weights.layers[1]
    x = np.random.default_rng(2).standard_normal((3, 20, c.dim)).astype(np.float32)
    cos, sin = spec.rope_tables(20, c.rope_dim, c.rope_base)
    q_w = np.vstack([lw["wq"], lw["wk"], lw["wv"]])
    got = _attention(x, lw, c, q_w, cos, sin)
    kv = c.n_kv_heads * c.head_dim
    positions = np.arange(20)
    for n in range(3):
        qkv = x[n] @ q_w.T
        q = spec.apply_rope(qkv[:, :c.dim].reshape(20, c.n_heads, c.head_dim), cos, sin,
                            positions, c.rope_dim)
        k = spec.apply_rope(qkv[:, c.dim:c.dim + kv].reshape(20, c.n_kv_heads, c.head_dim), cos,
                            sin, positions, c.rope_dim)
        v = qkv[:, c.dim + kv:].reshape(20, c.n_kv_heads, c.head_dim)
        want = spec.attention(q, k.transpose(1, 0, 2), v.transpose(1, 0, 2), 0)
        np.testing.assert_allclose(got[n], want, rtol=1e-5, atol=1e-5)
