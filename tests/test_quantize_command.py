"""``tmac quantize``: a model fitted once, saved at its packed size (tmac.model.modelfile), and
opened by every model command with ``--model OUT``; on the tiny model the tests write."""
import json

import numpy as np
import pytest

pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")

from tmac.cli import main  # noqa: E402
from tmac.golden import container  # noqa: E402
from tmac.model import calibration, formats, loader, modelfile, store, tiny  # noqa: E402
from tmac.model.tokenizer import GGUFTokenizer  # noqa: E402

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


@pytest.fixture()
def tiny_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path / "cache"))
    return tiny.write_tiny_llama(tmp_path / "tiny.gguf")


def _last_number(capsys):
    return float(capsys.readouterr().out.strip().splitlines()[-1])


def _same_weights(a, b):
    assert a.format == b.format
    assert np.array_equal(a.embed.view(np.uint32), b.embed.view(np.uint32))
    for x, y in zip(a.matrices(), b.matrices()):
        assert (x.scheme, x.bits, x.group_size, x.shape) == (y.scheme, y.bits, y.group_size, y.shape)
        assert np.array_equal(x.codes, y.codes)
        assert np.array_equal(x.scales, y.scales) and np.array_equal(x.zeros, y.zeros)


@pytest.mark.parametrize("fmt", ["w3", "asym4"])
def test_saved_model_is_the_prepared_model_and_scores_the_same(fmt, tiny_path, tmp_path, capsys):
    out = tmp_path / f"tiny-{fmt}.tmac"
    assert main(["quantize", str(tiny_path), "--format", fmt, "--group-size", "16", "-o",
                 str(out), "--quiet"]) == 0
    assert "bits/weight" in capsys.readouterr().out
    want = store.open_model(str(tiny_path), formats.parse(fmt, 16), use_cache=False).model
    assert modelfile.is_model_file(out) and not modelfile.is_model_file(tiny_path)
    _, got = modelfile.load(out)
    _same_weights(want, got)
    quality = got.notes["quality"]                  # measured at save time, the shipped text
    assert quality["text"] == "declaration_gettysburg.txt" and quality["f32"] > 1
    assert quality["perplexity"] > 1
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    args = ["perplexity", str(text), "--ctx", "32", "--max-chunks", "2"]
    assert main(args + ["--model", str(tiny_path), "--format", fmt, "--group-size", "16"]) == 0
    direct = _last_number(capsys)
    assert main(args + ["--model", str(out)]) == 0
    assert _last_number(capsys) == direct
    assert main(["generate", "--model", str(out), "--max-tokens", "3", "hello"]) == 0
    capsys.readouterr()
    assert main(["bench", "model", "--model", str(out), "--thread-counts", "1", "--repeat", "1",
                 "--prompt", "8", "--decode", "4", "--ppl-ctx", "256"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| " + fmt)]
    assert len(row) == 1 and row[0].endswith("x |")          # vs f32 from the saved record
    assert main(["info", str(out)]) == 0
    listing = capsys.readouterr().out
    assert "saved by tmac quantize" in listing and f"{got.format.label}" in listing


def test_gptq_with_a_users_calibration_text(tiny_path, tmp_path, capsys):
    text = tmp_path / "calib.txt"
    text.write_text(TEXT)
    out = tmp_path / "g.tmac"
    assert main(["quantize", str(tiny_path), "--format", "w2", "--group-size", "16", "--fit",
                 "gptq", "--calibration", str(text), "-o", str(out), "--quiet"]) == 0
    g = loader.load(tiny_path)
    ids = calibration.from_text(GGUFTokenizer.from_metadata(g.metadata), TEXT)
    from tmac.model.runtime import prepare

    want = prepare(g.weights, formats.parse("w2", 16, fit="gptq"), calibration=ids)
    _same_weights(want, modelfile.load(out)[1])


def test_the_file_says_what_it_holds_and_refuses_another_format(tiny_path, tmp_path, capsys):
    out = tmp_path / "m.tmac"
    assert main(["quantize", str(tiny_path), "--format", "w4", "-o", str(out), "--quiet"]) == 0
    assert main(["perplexity", "--model", str(out), "--format", "w3", "--ctx", "16"]) == 2
    err = capsys.readouterr().err
    assert "--format" in err and "w4" in err and "Traceback" not in err
    # an existing output is kept unless --force
    assert main(["quantize", str(tiny_path), "--format", "w4", "-o", str(out), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["quantize", str(tiny_path), "--format", "w4", "-o", str(out), "--quiet",
                 "--force"]) == 0


def test_damaged_model_files_are_one_line_errors(tiny_path, tmp_path, capsys):
    out = tmp_path / "m.tmac"
    assert main(["quantize", str(tiny_path), "--format", "w3", "-o", str(out), "--quiet"]) == 0
    data = out.read_bytes()
    for cut in (len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.tmac"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=str(bad)):
            modelfile.load(bad)
    tensors, meta = container.read(str(out), max_file_bytes=1 << 40)
    matrices = json.loads(meta["matrices"])
    matrices["0.down"]["bits"] = "9"
    wrong = tmp_path / "wrong.tmac"
    container.write(str(wrong), tensors, {**meta, "matrices": json.dumps(matrices)})
    with pytest.raises(ValueError, match="0.down.*bits 9"):
        modelfile.load(wrong)
    assert main(["perplexity", "--model", str(wrong), "--ctx", "16"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_bad_quantize_arguments_are_one_line_errors(tiny_path, tmp_path, capsys):
    text = tmp_path / "short.txt"
    text.write_text("too short")
    base = ["quantize", str(tiny_path), "-o", str(tmp_path / "x.tmac"), "--quiet"]
    assert main(base + ["--fit", "gptq", "--calibration", str(text)]) == 2
    assert "fewer than one calibration sequence" in capsys.readouterr().err
    assert main(base + ["--calibration", str(text)]) == 2
    assert "only used by --fit gptq" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--format", "f32"])
    assert not (tmp_path / "x.tmac").exists()


def test_generate_warns_once_when_the_saved_quality_is_poor(tiny_path, tmp_path, capsys):
    out = tmp_path / "m.tmac"
    assert main(["quantize", str(tiny_path), "--format", "w4", "-o", str(out), "--quiet"]) == 0
    tensors, meta = container.read(str(out), max_file_bytes=1 << 40)
    for ratio, warned in ((3.0, True), (1.01, False)):
        quality = {"perplexity": 30.0 * ratio, "f32": 30.0, "text": "t.txt", "ctx": 256}
        marked = tmp_path / f"q{ratio}.tmac"
        container.write(str(marked), tensors, {**meta, "quality": json.dumps(quality)})
        capsys.readouterr()
        assert main(["generate", "--model", str(marked), "--max-tokens", "2", "hi"]) == 0
        err = capsys.readouterr().err
        assert err.count("warning: this model's perplexity") == (1 if warned else 0)
        if warned:
            assert "3.00x" in err
    no_measure = tmp_path / "n.tmac"
    assert main(["quantize", str(tiny_path), "--format", "w4", "-o", str(no_measure), "--quiet",
                 "--no-measure"]) == 0
    assert "quality" not in modelfile.load(no_measure)[1].notes
