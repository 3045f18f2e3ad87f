"""tmac convert: a GGUF rewritten in another llama.cpp type, checked against the gguf package
(its reader and dequantizers) and against the source weights; refusals before anything is written."""
import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")

from tmac.cli import main  # noqa: E402
from tmac.model import convert, loader, tiny  # noqa: E402
from tmac.reference import ggml  # noqa: E402

DIMS = dict(dim=256, ffn_dim=512, n_heads=4, n_kv_heads=2)     # K = 256, 512: every type fits


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return tiny.write_tiny_llama(tmp_path_factory.mktemp("convert") / "tiny.gguf", **DIMS)


def _tensors(path):
    return {t.name: t for t in gguf.GGUFReader(str(path)).tensors}


@pytest.mark.parametrize("to", convert.WRITABLE)
def test_every_writable_type(source, tmp_path, to):
    out = tmp_path / "out.gguf"
    written = convert.convert(source, to, out)
    before, after = _tensors(source), _tensors(out)
    assert list(after) == list(before)
    head = "token_embd.weight"                                  # tiny's head is tied
    for name, t in after.items():
        src = before[name]
        assert t.tensor_type.name == written[name]
        if len(src.shape) < 2:
            assert t.tensor_type == src.tensor_type and np.array_equal(t.data, src.data)
        elif name == head:                                      # Q8_0 in tiny: kept, bytes and all
            assert t.tensor_type.name == "Q8_0" and np.array_equal(t.data, src.data)
        else:
            assert t.tensor_type.name == to
            _assert_within_a_step(loader.dequantize_tensor(src), t, to)


def _assert_within_a_step(w_src, t, to):
    """gguf's dequantization of the written bytes is the source weight to within one quantization
    step of its group (round-to-nearest, or a clamped extreme code); the float types round once."""
    w_out = gguf.quants.dequantize(t.data, t.tensor_type).reshape(w_src.shape)
    if to == "F32":
        assert np.array_equal(w_out, w_src)
    elif to in ("F16", "BF16"):
        half_ulp = np.abs(w_src) * 2.0 ** -(11 if to == "F16" else 8)
        smallest = 2.0 ** -25 if to == "F16" else 0.0           # half of float16's least subnormal
        assert np.all(np.abs(w_out - w_src) <= np.maximum(half_ulp, smallest))
    else:
        scale, _ = ggml.decode_matrix(to, t.data, w_src.shape).group_params()
        step = np.repeat(np.abs(scale), w_src.shape[1] // scale.shape[1], axis=1)
        assert np.all(np.abs(w_out - w_src) <= step * 1.01)    # a clamped code, d rounded
        assert np.mean(np.abs(w_out - w_src) <= step * 0.501) > 0.9

def test_same_metadata_and_native_load(source, tmp_path):
    out = convert.convert(source, "Q5_0", tmp_path / "q5.gguf") and tmp_path / "q5.gguf"
    a, b = gguf.GGUFReader(str(source)), gguf.GGUFReader(str(out))
    fields = lambda r: {f.name: f.contents() for f in r.fields.values()  # noqa: E731
                        if not f.name.startswith("GGUF.")}
    assert fields(a) == fields(b)
    model = loader.load(out, native=True)
    kinds = set(model.weights.source_types.values())
    assert "Q5_0" in kinds and "Q8_0" in kinds


def test_a_conversion_is_a_fixed_point(source, tmp_path):
    """Converting a Q4_1 file to Q4_1 again writes the same bytes (SmolLM2's own Q4_1 file does
    too: llama.cpp's quantizer and gguf's agree)."""
    once = tmp_path / "once.gguf"
    convert.convert(source, "Q4_1", once)
    convert.convert(once, "Q4_1", tmp_path / "twice.gguf")
    assert once.read_bytes() == (tmp_path / "twice.gguf").read_bytes()


def test_head_type_on_request(source, tmp_path):
    written = convert.convert(source, "Q4_0", tmp_path / "h.gguf", head="f16")
    assert written["token_embd.weight"] == "F16"
    assert _tensors(tmp_path / "h.gguf")["token_embd.weight"].tensor_type.name == "F16"


@pytest.mark.parametrize("to, head, message", [
    ("Q4_K", None, "--to 'Q4_K' cannot be written"),
    ("IQ4_NL", None, "--to 'IQ4_NL' cannot be written"),
    ("Q4_0", "Q6_K", "--head 'Q6_K' cannot be written"),
])
def test_types_it_cannot_write_are_refused(source, tmp_path, to, head, message):
    with pytest.raises(ValueError, match=message):
        convert.convert(source, to, tmp_path / "x.gguf", head=head)
    assert list(tmp_path.iterdir()) == []


def test_a_block_that_does_not_divide_k_is_refused(tmp_path):
    small = tiny.write_tiny_llama(tmp_path / "small.gguf")       # K = 64, 128
    with pytest.raises(ValueError, match="TQ2_0 needs K a multiple of 256; tensor blk.0.attn_q"):
        convert.convert(small, "TQ2_0", tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "x.gguf.part").exists()


def test_a_source_tensor_tmac_cannot_read_is_refused(tmp_path):
    bad = tiny.write_tiny_llama(tmp_path / "iq.gguf", types={"attn_v.weight": "IQ4_NL"})
    with pytest.raises(ValueError, match="tensor blk.0.attn_v.weight is IQ4_NL"):
        convert.convert(bad, "Q8_0", tmp_path / "x.gguf")


def test_cli(source, tmp_path, capsys):
    out = tmp_path / "c.gguf"
    assert main(["convert", str(source), "--to", "q8_0", "-o", str(out), "--quiet"]) == 0
    assert "tensors 15 Q8_0, 5 F32" in capsys.readouterr().out
    # no overwrite without --force
    assert main(["convert", str(source), "--to", "Q8_0", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tmac convert: error: {out} exists; pass --force to overwrite it"]
    assert main(["convert", str(source), "--to", "Q4_0", "-o", str(out), "--force",
                 "--quiet"]) == 0
    assert _tensors(out)["blk.0.attn_q.weight"].tensor_type.name == "Q4_0"
