"""Token generation (greedy or sampled, streamed as text) and perplexity, on a Runtime."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Sampling:
    """temperature 0 means greedy (argmax, deterministic). Otherwise: logits / temperature,
    keep the top_k largest (0: all), then the smallest set of tokens whose probability reaches
    top_p, and draw with numpy's generator seeded by ``seed``."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError("sampling needs temperature >= 0, 0 < top_p <= 1 and top_k >= 0")


def sample(logits, sampling: Sampling, rng) -> int:
    """One token id from a (vocab,) row of logits."""
    if sampling.temperature == 0:
        return int(np.argmax(logits))
    z = np.asarray(logits, np.float64) / sampling.temperature
    if sampling.top_k and sampling.top_k < z.size:
        cut = np.partition(z, -sampling.top_k)[-sampling.top_k]
        z = np.where(z >= cut, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    if sampling.top_p < 1:
        order = np.argsort(-p, kind="stable")
        keep = np.cumsum(p[order]) - p[order] < sampling.top_p       # always keeps the first
        mask = np.zeros_like(p, bool)
        mask[order[keep]] = True
        p = np.where(mask, p, 0)
        p /= p.sum()
    return int(rng.choice(p.size, p=p))


@dataclass
class GenerationResult:
    tokens: list = field(default_factory=list)        # generated ids (stop token excluded)
    text: str = ""
    prompt_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_tokens: int = 0                            # forward calls of one token
    decode_seconds: float = 0.0
    stopped: str = "max_tokens"                      # or "eos", "context"

    @property
    def prefill_tps(self):
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds else float("nan")

    @property
    def decode_tps(self):
        return self.decode_tokens / self.decode_seconds if self.decode_seconds else float("nan")


def generate(runtime, tokenizer, prompt_ids, max_tokens=128, sampling=Sampling(), on_text=None,
             stop_ids=None) -> GenerationResult:
    """Prefill ``prompt_ids`` (GEMM kernels), then decode one token per step (GEMV kernels).

    ``on_text(piece)`` receives text as soon as it is complete UTF-8 (streaming). Stops at
    ``max_tokens``, at an end token (the tokenizer's EOS, ``<|im_end|>`` and any ``stop_ids``),
    or when the context is full.
    """
    from tmac.model.tokenizer import TextStream

    stop = set(stop_ids or ()) | {i for i in (tokenizer.eos_id,) if i is not None}
    im_end = tokenizer.tokenizer.token_to_id("<|im_end|>")
    if im_end is not None:
        stop.add(im_end)
    rng = np.random.default_rng(sampling.seed)
    stream = TextStream(tokenizer)
    result = GenerationResult(prompt_tokens=len(prompt_ids))
    runtime.reset()
    start = time.perf_counter()
    logits = runtime.forward(prompt_ids)
    token = sample(logits[-1], sampling, rng)
    result.prefill_seconds = time.perf_counter() - start
    while True:
        if token in stop:
            result.stopped = "eos"
            break
        result.tokens.append(token)
        piece = stream.push(token)
        if piece and on_text:
            on_text(piece)
        if len(result.tokens) >= max_tokens:
            break
        if runtime.pos >= runtime.max_ctx:
            result.stopped = "context"
            break
        start = time.perf_counter()
        logits = runtime.forward([token])
        token = sample(logits[-1], sampling, rng)
        result.decode_seconds += time.perf_counter() - start
        result.decode_tokens += 1
    result.text = tokenizer.decode(result.tokens, skip_special=True)
    return result


@dataclass
class PerplexityResult:
    perplexity: float
    nll: float               # mean negative log-likelihood (nats per token)
    scored: int              # tokens scored
    chunks: int
    seconds: float


def perplexity(runtime, ids, ctx: int, progress=None) -> PerplexityResult:
    """Perplexity of ``ids`` by the method of llama.cpp's ``perplexity`` tool.

    The tokens are cut into non-overlapping chunks of ``ctx``; each chunk runs from an empty
    cache, and only its second half is scored (each scored token has at least ctx/2 tokens of
    context): the NLL of token j+1 given tokens 0..j, for j in [ctx/2, ctx - 1).
    """
    ids = np.asarray(ids, np.int64)
    n_chunks = len(ids) // ctx
    if n_chunks == 0:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than --ctx {ctx}")
    if runtime.max_ctx < ctx:
        raise ValueError(f"runtime context {runtime.max_ctx} is smaller than ctx {ctx}")
    first = ctx // 2
    nll, scored = 0.0, 0
    start = time.perf_counter()
    for c in range(n_chunks):
        chunk = ids[c * ctx:(c + 1) * ctx]
        runtime.reset()
        logits = np.asarray(runtime.forward(chunk, all_logits=True), np.float64)
        z = logits[first:ctx - 1]
        z = z - z.max(axis=1, keepdims=True)
        logp = z[np.arange(len(z)), chunk[first + 1:ctx]] - np.log(np.exp(z).sum(axis=1))
        nll -= float(logp.sum())
        scored += len(z)
        if progress:
            progress(c + 1, n_chunks, math.exp(nll / scored))
    mean = nll / scored
    return PerplexityResult(math.exp(mean), mean, scored, n_chunks, time.perf_counter() - start)
