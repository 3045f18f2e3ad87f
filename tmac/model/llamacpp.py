"""llama.cpp on the same GGUF file, through llama-cpp-python (the optional "llamacpp" extra).

``LlamaCppRuntime`` offers the two methods of tmac's Runtime that tmac.model.bench and
tmac.model.generate.perplexity use -- ``reset()`` and ``forward(tokens, all_logits)`` -- so the
two engines are timed by the same loop and scored by the same perplexity code, on the same
token ids (tmac's tokenizer; llama.cpp's own is not involved).

The pinned llama-cpp-python 0.3.36 vendors llama.cpp commit 0c1e570 and is built from source with
the machine's own instruction set (-march=native) when installed.
"""
from __future__ import annotations

import numpy as np

PINNED = "llama-cpp-python==0.3.36"
LLAMA_CPP_COMMIT = "0c1e570"


def require():
    """MissingExtra (a one-line install hint) unless llama-cpp-python can be imported."""
    from tmac.extras import MissingExtra, hint

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise MissingExtra(hint("llamacpp", "--vs-llamacpp")) from None


def version() -> str:
    """'llama-cpp-python X (llama.cpp C)' of the installed package."""
    import llama_cpp

    return f"llama-cpp-python {llama_cpp.__version__} (llama.cpp {LLAMA_CPP_COMMIT})"


class LlamaCppRuntime:
    """llama.cpp running the GGUF file at ``path`` with ``threads`` threads (prefill and decode)
    and a context of ``max_ctx`` tokens. ``all_logits=True`` keeps every position's logits (for
    perplexity; llama.cpp computes only the last one's otherwise, as llama-bench does)."""

    def __init__(self, path, max_ctx: int, threads: int, all_logits: bool = False):
        require()
        from llama_cpp import Llama

        self.max_ctx = max_ctx
        self.threads = threads
        self._all_logits = all_logits
        self._llm = Llama(model_path=str(path), n_ctx=max_ctx, n_batch=min(max_ctx, 512),
                          n_threads=threads, n_threads_batch=threads, logits_all=all_logits,
                          verbose=False)

    @property
    def pos(self) -> int:
        return self._llm.n_tokens

    def reset(self):
        """Forget the context (the KV cache is overwritten from position 0)."""
        self._llm.reset()

    def forward(self, tokens, all_logits: bool = False):
        """Run ``tokens`` (ints) after the current context. Returns (len(tokens), vocab) float32
        logits when ``all_logits`` (which needs all_logits=True at construction), else None."""
        if self.pos + len(tokens) > self.max_ctx:
            raise ValueError(f"context of {self.max_ctx} tokens exceeded: {self.pos} + "
                             f"{len(tokens)} tokens")
        if all_logits and not self._all_logits:
            raise ValueError("all_logits needs LlamaCppRuntime(..., all_logits=True)")
        start = self.pos
        self._llm.eval([int(t) for t in tokens])
        if all_logits:
            return np.array(self._llm.scores[start:self.pos], np.float32)
        return None
