"""tmac bench model --vs-llamacpp: the bandwidth probe, the bytes-per-token count, the missing-extra
hint, and the side-by-side table (with a stand-in for llama-cpp-python whose expected figures are
exact math: uniform logits have perplexity equal to the vocabulary size)."""
import json
import sys
import types

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")

from tmac.cli import main  # noqa: E402
from tmac.kernels import bandwidth  # noqa: E402
from tmac.model import tiny, versus  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny.write_tiny_llama(tmp_path_factory.mktemp("versus") / "tiny.gguf")


def test_stream_sum_is_the_sum():
    words = np.random.default_rng(0).integers(-2**40, 2**40, 4096 * 8, dtype=np.int64)
    for chunks in (1, 8, 16):
        assert bandwidth._stream_sum(words, chunks) == int(words.astype(object).sum())


def test_read_bandwidth_is_a_rate():
    rate = bandwidth.read_bandwidth(1, nbytes=4 * 1024**2, repeat=2)
    assert 1e8 < rate < 1e13                        # between 0.1 GB/s and 10 TB/s


def test_file_weights_count_every_matrix_read_per_token(model):
    tensors = gguf.GGUFReader(str(model)).tensors
    expected = 0
    for t in tensors:
        if len(t.shape) == 2:          # tied head: token_embd is read, as the output matrix
            block, size = gguf.GGML_QUANT_SIZES[t.tensor_type]
            expected += int(np.prod(t.shape)) // block * size
    nbytes, label = versus.file_weights(model)
    assert nbytes == expected
    assert label.endswith(", head Q8_0") and "Q4_1" in label


def test_missing_llama_cpp_is_a_one_line_hint(model, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)       # import fails
    assert main(["bench", "model", "--vs-llamacpp", "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "llamacpp" in err[0] and "pip install" in err[0], err


class _UniformLlama:
    """llama_cpp.Llama's surface used by LlamaCppRuntime, with all-zero logits."""
    n_vocab = None

    def __init__(self, model_path, n_ctx, logits_all, **kwargs):
        self.n_tokens, self.n_ctx, self._logits_all = 0, n_ctx, logits_all
        self.scores = np.zeros((n_ctx, self.n_vocab), np.float32)

    def reset(self):
        self.n_tokens = 0

    def eval(self, tokens):
        assert self.n_tokens + len(tokens) <= self.n_ctx
        self.n_tokens += len(tokens)


def test_side_by_side_table(model, monkeypatch, capsys):
    from tmac.model import loader

    _UniformLlama.n_vocab = loader.load(model).config.vocab_size
    fake = types.ModuleType("llama_cpp")
    fake.Llama, fake.__version__ = _UniformLlama, "0.0-test"
    monkeypatch.setitem(sys.modules, "llama_cpp", fake)
    assert main(["bench", "model", "--vs-llamacpp", "--model", str(model), "--thread-counts", "1",
                 "--prompt", "8", "--decode", "4", "--repeat", "1", "--ppl-ctx", "64",
                 "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    tmac_row, llama_row = report["rows"]
    assert tmac_row["engine"].startswith("tmac (") and llama_row["engine"] == "llama.cpp"
    assert tmac_row["weights"] == llama_row["weights"] == versus.file_weights(model)[1]
    assert llama_row["perplexity"] == pytest.approx(_UniformLlama.n_vocab, rel=1e-6)
    assert llama_row["bytes_per_token"] == versus.file_weights(model)[0]
    assert llama_row["prefill_ratio"] == llama_row["decode_ratio"] == 1.0
    for row in report["rows"]:
        assert row["decode_gbs"] == pytest.approx(row["decode_tps"] * row["bytes_per_token"] / 1e9,
                                                  rel=1e-6, abs=0.006)
        assert row["pct_of_bandwidth"] == pytest.approx(
            100 * row["decode_gbs"] / row["read_gbs"], rel=0.02, abs=0.1)
