"""SentencePiece BPE from GGUF metadata (``tokenizer.ggml.model = llama``: scores, no merges).

Expected ids are derived by hand from llama.cpp's algorithm: spaces become "▁"; adjacent pieces
are joined, highest-scoring joined token first, while the joined text is a vocabulary token;
pieces left outside the vocabulary are spelled as their UTF-8 bytes' <0xXX> tokens. (A Gemma 3
file's vocabulary of 262144 tokens was checked equal to llama.cpp's tokenizer on code, Unicode,
chat markup and spacing: docs/model.md.)
"""
import pytest

pytest.importorskip("tokenizers", reason="the 'model' extra (tokenizers) is not installed")

from tmac.model.tokenizer import GGUFTokenizer, spm_merges  # noqa: E402

NORMAL, CONTROL, USER, BYTE = 1, 3, 4, 6
SPECIAL = ["<unk>", "<s>", "</s>"]
BYTES = [f"<0x{b:02X}>" for b in range(256)]


def tokenizer(scored, add_space_prefix=False, extra=()):
    """Vocabulary: specials, 256 byte tokens, the single letters a, b, c and "▁", the pieces
    ``scored`` {piece: score}, then ``extra`` [(token, type)]."""
    pieces = {"▁": -50.0, "a": -50.0, "b": -50.0, "c": -50.0, **scored}
    tokens = SPECIAL + BYTES + list(pieces) + [t for t, _ in extra]
    types = [CONTROL] * 3 + [BYTE] * 256 + [NORMAL] * len(pieces) + [k for _, k in extra]
    scores = [0.0] * (3 + 256) + list(pieces.values()) + [0.0] * len(extra)
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.scores": scores,
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": False,
            "tokenizer.ggml.add_space_prefix": add_space_prefix}
    return GGUFTokenizer.from_metadata(meta)


def pieces(tok, text):
    return [tok.tokenizer.id_to_token(i) for i in tok.encode(text)]


@pytest.mark.parametrize("scored, expected", [
    ({"ab": -1.0, "bc": -2.0}, ["ab", "c"]),                  # a+b scores higher: joined first
    ({"ab": -2.0, "bc": -1.0}, ["a", "bc"]),                  # b+c scores higher
    ({"ab": -2.0, "bc": -1.0, "abc": -9.0}, ["abc"]),         # then a + bc is a token too
])
def test_the_highest_scoring_join_goes_first(scored, expected):
    assert pieces(tokenizer(scored), "abc") == expected


def test_spaces_become_the_visible_space_and_unknown_bytes_fall_back():
    tok = tokenizer({"▁a": -0.5})
    assert pieces(tok, "c a") == ["c", "▁a"]
    assert pieces(tok, "aé") == ["a", "<0xC3>", "<0xA9>"]
    assert tok.decode(tok.encode("c aé")) == "c aé"
    assert pieces(tokenizer({"▁a": -0.5}, add_space_prefix=True), "a") == ["▁a"]


def test_control_and_user_defined_tokens_are_matched_whole():
    tok = tokenizer({}, extra=[("<start>", CONTROL), ("\n\n", USER)])
    assert pieces(tok, "<start>a\n\nb") == ["<start>", "a", "\n\n", "b"]


def test_merges_rank_by_the_joined_tokens_score_and_skip_control_and_byte_tokens():
    tokens = ["a", "b", "ab", "<0x61>", "<c>", "ba"]
    scores = [0.0, 0.0, -2.0, 0.0, 0.0, -1.0]
    types = [NORMAL, NORMAL, NORMAL, BYTE, CONTROL, NORMAL]
    assert spm_merges(tokens, scores, types) == [("b", "a"), ("a", "b")]
