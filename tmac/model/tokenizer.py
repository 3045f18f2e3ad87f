"""The tokenizer stored in a GGUF file, run by Hugging Face ``tokenizers`` (no hand-written BPE).

A ``tokenizer.ggml.model == "gpt2"`` file holds a byte-level BPE: its vocabulary
(``tokenizer.ggml.tokens``, id = position), its merges (``"a b"`` strings, rank = position),
token types (3 = control, 4 = user-defined: matched whole, never split) and a pre-tokenizer name
(``tokenizer.ggml.pre``) that selects how text is split before BPE. We rebuild exactly that with
``tokenizers.models.BPE`` and the matching pre-tokenizer:

    smollm        digits split one by one, then the GPT-2 regex (byte level)
    gpt2/default  the GPT-2 regex (byte level)
    qwen2         Qwen2's regex (QWEN2_PATTERN: letters with one leading non-letter, digits one
                  by one, newlines kept with the punctuation before them), then byte level

A ``tokenizer.ggml.model == "llama"`` file (Gemma, Llama 2, ...) holds a SentencePiece BPE: a
vocabulary with a score per token and no merges. llama.cpp tokenizes it by repeatedly joining
the adjacent pair whose joined text is the vocabulary token of highest score, then spelling
any unknown piece as byte tokens ``<0xXX>``; spaces are "▁" (and one is prepended when
``tokenizer.ggml.add_space_prefix``). ``spm_merges`` turns the scores into the equivalent
ranked merge list (every split of a token into two vocabulary tokens, ranked by the joined
token's score), so ``tokenizers.models.BPE`` with byte fallback runs the same algorithm.

The chat template (``tokenizer.chat_template``, Jinja) is rendered with jinja2's sandbox, as
Hugging Face's ``apply_chat_template`` does.
"""
from __future__ import annotations

from dataclasses import dataclass

from tmac.extras import MissingExtra, hint

CONTROL, USER_DEFINED, BYTE = 3, 4, 6
SPACE = "\u2581"          # SentencePiece's visible space
PRE_TOKENIZERS = ("smollm", "gpt2", "default", "qwen2")
# the split pattern of Qwen2's tokenizer.json, which llama.cpp's llama-vocab.cpp also uses for
# the "qwen2" pre-tokenizer
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _pre_tokenizer(name):
    from tokenizers import pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if name == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if name in ("gpt2", "default"):
        return byte_level
    if name == "qwen2":
        from tokenizers import Regex

        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    raise ValueError(f"unsupported tokenizer pre-tokenizer {name!r}; tmac knows {', '.join(PRE_TOKENIZERS)}")


def spm_merges(tokens, scores, types) -> list:
    """SentencePiece scores as BPE merges: (a, b) for every vocabulary token t = a + b with a and
    b vocabulary tokens too, ranked by t's score (highest first; ties by t's id). Control and
    byte tokens are never formed by merging."""
    vocab = {t: i for i, t in enumerate(tokens)}
    ranked = sorted((i for i, kind in enumerate(types) if kind not in (CONTROL, BYTE)),
                    key=lambda i: (-scores[i], i))
    merges = []
    for i in ranked:
        t = tokens[i]
        merges.extend((t[:j], t[j:]) for j in range(1, len(t)) if t[:j] in vocab and t[j:] in vocab)
    return merges


def _sentencepiece(meta, tokens, types, vocab):
    """A tokenizers.Tokenizer running llama.cpp's SentencePiece BPE on this vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    scores = list(meta.get("tokenizer.ggml.scores", [0.0] * len(tokens)))
    unk = meta.get("tokenizer.ggml.unknown_token_id")
    model = models.BPE(vocab, spm_merges(tokens, scores, types), byte_fallback=True, fuse_unk=True,
                       unk_token=None if unk is None else tokens[int(unk)])
    tok = Tokenizer(model)
    steps = [normalizers.Replace(" ", SPACE)]
    if meta.get("tokenizer.ggml.add_space_prefix", False):
        steps.insert(0, normalizers.Prepend(SPACE))
    tok.normalizer = normalizers.Sequence(steps)
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    return tok


@dataclass
class GGUFTokenizer:
    """Encode/decode text with the model's own vocabulary; ``apply_chat_template`` for chat."""

    tokenizer: object            # tokenizers.Tokenizer
    bos_id: int | None
    eos_id: int | None
    add_bos: bool
    chat_template: str | None
    special_ids: frozenset

    @classmethod
    def from_metadata(cls, meta: dict) -> "GGUFTokenizer":
        try:
            from tokenizers import AddedToken, Tokenizer, decoders, models
        except ImportError:
            raise MissingExtra(hint("model", "the tokenizer")) from None
        kind = meta.get("tokenizer.ggml.model")
        if kind not in ("gpt2", "llama"):
            raise ValueError(f"unsupported tokenizer model {kind!r}: tmac reads byte-level BPE "
                             f"('gpt2') and SentencePiece BPE ('llama')")
        tokens = list(meta["tokenizer.ggml.tokens"])
        types = list(meta.get("tokenizer.ggml.token_type", [1] * len(tokens)))
        vocab = {t: i for i, t in enumerate(tokens)}
        if kind == "gpt2":
            merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
            tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False))
            tok.pre_tokenizer = _pre_tokenizer(meta.get("tokenizer.ggml.pre", "default"))
            tok.decoder = decoders.ByteLevel()
        else:
            tok = _sentencepiece(meta, tokens, types, vocab)
        special = [AddedToken(t, special=True, normalized=False)
                   for t, kind in zip(tokens, types) if kind == CONTROL]
        user = [AddedToken(t, special=False, normalized=False)
                for t, kind in zip(tokens, types) if kind == USER_DEFINED]
        tok.add_special_tokens(special)
        tok.add_tokens(user)
        special_ids = frozenset(i for i, kind in enumerate(types) if kind == CONTROL)
        bos = meta.get("tokenizer.ggml.bos_token_id")
        eos = meta.get("tokenizer.ggml.eos_token_id")
        return cls(tok, None if bos is None else int(bos), None if eos is None else int(eos),
                   bool(meta.get("tokenizer.ggml.add_bos_token", False)),
                   meta.get("tokenizer.chat_template"), special_ids)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_bos: bool | None = None) -> list:
        """Token ids of ``text``; special-token strings (e.g. ``<|im_start|>``) map to their ids.
        A BOS id is prepended when the file asks for it (``add_bos_token``) or ``add_bos``."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids, skip_special: bool = False) -> str:
        return self.tokenizer.decode(list(map(int, ids)), skip_special_tokens=skip_special)

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        """Render the model's Jinja chat template for ``messages`` [{"role", "content"}]."""
        if not self.chat_template:
            raise ValueError("this model has no chat template (tokenizer.chat_template)")
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            raise MissingExtra(hint("model", "chat templates")) from None
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(message):
            raise ValueError(f"chat template: {message}")

        env.globals["raise_exception"] = raise_exception
        token = lambda i: self.tokenizer.id_to_token(i) if i is not None else ""  # noqa: E731
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=token(self.bos_id), eos_token=token(self.eos_id))


class TextStream:
    """Turns a growing list of token ids into text pieces as soon as they are complete UTF-8.

    Byte-level BPE can split a character across tokens; a piece ending in U+FFFD is held back
    until the next token completes it.
    """

    def __init__(self, tokenizer: GGUFTokenizer, skip_special: bool = True):
        self.tok, self.skip = tokenizer, skip_special
        self.ids, self.start, self.emitted = [], 0, ""

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        text = self.tok.decode(self.ids[self.start:], self.skip)
        if text.endswith("\ufffd"):
            return ""
        piece = text[len(self.emitted):]
        self.emitted = text
        if len(self.ids) - self.start > 16:             # keep the re-decoded window short
            self.start, self.emitted = len(self.ids), ""
        return piece
