"""GGUF files run in their own tensor types (``--format native``): every GGML block type read
natively, compared with the same file dequantized; corrupt blocks refused naming the tensor."""

import numpy as np
import pytest

pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")
pytest.importorskip("tokenizers", reason="the 'model' extra (tokenizers) is not installed")

from tmac.formats import QuantizedWeight  # noqa: E402
from tmac.model import formats, loader, runtime, store, tiny  # noqa: E402
from tmac.reference import ggml  # noqa: E402

# dims of 256 so that the K-quants' 256-weight blocks fit every matrix
DIMS = dict(dim=256, ffn_dim=512, n_heads=4, n_kv_heads=2, n_layers=2)
LINEAR = ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
          "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight", "token_embd.weight")
BLOCK_TYPES = [t for t in ggml.BLOCK_TYPES if ggml.get(t).bits is not None]


def write(path, kind, **types):
    mix = {suffix: kind for suffix in LINEAR}
    mix.update(types)
    return tiny.write_tiny_llama(path, types=mix, **DIMS)


@pytest.mark.parametrize("kind", BLOCK_TYPES)
def test_every_block_type_runs_natively_as_stored(tmp_path, kind):
    """Each linear weight is the file's own blocks (same bytes back); dequantized it equals the
    float loader's weights bit for bit; the per-layer LUT path equals the reference matmul bit
    for bit, and so does the fused path (the K-quants' two-level scales stacked as they are),
    prefill and decode."""
    path = write(tmp_path / f"{kind}.gguf", kind)
    native = loader.load(path, native=True)
    dense = loader.load(path)
    wq = native.weights.layers[1]["wq"]
    assert isinstance(wq, QuantizedWeight) and wq.scheme == kind.lower()
    assert np.array_equal(wq.dequantize().view(np.uint32),
                          dense.weights.layers[1]["wq"].view(np.uint32))
    head = native.weights.output
    assert isinstance(head, QuantizedWeight) and head.shape == (dense.config.vocab_size, 256)
    pm = runtime.prepare_native(native.weights)
    ids = list(range(3, 15))
    spec = runtime.Runtime(pm, max_ctx=32, max_seq=16, matmul="reference", fused=False)
    layers = runtime.Runtime(pm, max_ctx=32, max_seq=16, fused=False)
    a = spec.forward(ids, all_logits=True).copy()
    assert np.array_equal(a, layers.forward(ids, all_logits=True))
    fused = runtime.Runtime(pm, max_ctx=32, max_seq=16)
    assert fused.fused
    if fused.fused:
        assert np.array_equal(fused.forward(ids, all_logits=True), a)
        step = [int(a[-1].argmax())]
        assert np.array_equal(fused.forward(step, all_logits=True),
                              spec.forward(step, all_logits=True))


def test_mixed_types_in_one_projection_run_as_parts(tmp_path):
    """Q, K and V of different types cannot share one matrix: they run one after the other."""
    path = write(tmp_path / "mix.gguf", "Q4_0", **{"attn_v.weight": "Q6_K", "attn_k.weight": "Q8_0"})
    pm = runtime.prepare_native(loader.load(path, native=True).weights)
    assert isinstance(pm.layers[0]["qkv"], list) and len(pm.layers[0]["qkv"]) == 3
    spec = runtime.Runtime(pm, max_ctx=32, max_seq=16, matmul="reference")
    layers = runtime.Runtime(pm, max_ctx=32, max_seq=16)
    assert not layers.fused
    ids = list(range(3, 12))
    assert np.array_equal(spec.forward(ids, all_logits=True), layers.forward(ids, all_logits=True))
    assert "Q6_K" in pm.summary().to_markdown()


def _tensor_offset(path, name):
    import gguf

    reader = gguf.GGUFReader(str(path))
    t = next(t for t in reader.tensors if t.name == name)
    return int(t.data_offset), int(t.n_bytes)


def test_nan_scales_and_truncation_are_refused_naming_the_tensor(tmp_path):
    path = write(tmp_path / "q4.gguf", "Q4_0")
    name = "blk.1.attn_output.weight"
    offset, size = _tensor_offset(path, name)
    data = bytearray(path.read_bytes())
    data[offset:offset + 2] = np.float16(np.nan).tobytes()       # the first block's d
    bad = tmp_path / "nan.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(loader.CorruptModelError, match=rf"{name}.*(NaN|Inf|finite)"):
        loader.load(bad, native=True)
    with pytest.raises(loader.CorruptModelError, match=rf"{name}.*(NaN|Inf|finite)"):
        loader.load(bad)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:offset + size // 2])
    with pytest.raises(loader.CorruptModelError):
        loader.load(cut, native=True)


def test_native_is_the_default_model_format_and_info_lists_the_types(tmp_path, capsys):
    from tmac.cli import main

    assert formats.parse("native").is_native
    path = write(tmp_path / "q5k.gguf", "Q5_K", **{"ffn_down.weight": "Q6_K"})
    om = store.open_model(str(path), formats.parse("native"))
    assert om.model.layers[0]["down"].scheme == "q6_k" and om.model.format.is_native
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Q5_K" in out and "Q6_K" in out and "native" in out
