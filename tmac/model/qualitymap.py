"""The quality map: perplexity against bits per weight, for every way tmac can store a model.

Each point is one model measured the same way (``tmac perplexity``: llama.cpp's method, the
same text, ctx and chunks): float32, the file's own types (``native``: llama.cpp's bytes, run
natively), other GGUF files of the same weights (e.g. ``tmac convert`` to Q4_0, Q5_0, Q8_0),
uniform widths under each fit (lsq, hqq, gptq, ...), and mixes under bits budgets
(tmac.model.mix). Bits per weight count every stored byte of every linear matrix, the head
included (codes, scales, offsets; a GGUF type's blocks as stored).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Point:
    label: str            # what was measured, e.g. "w3 g32 gptq", "native (Q4_1)", "mix 3.5"
    kind: str             # "float", "gguf", a fit name ("lsq", "gptq", ...), or "mix <fit>"
    bits_per_weight: float
    weight_mb: float      # MB of linear weights read per token
    perplexity: float
    seconds: float        # preparing (fitting) and measuring


def bits_of(model) -> tuple:
    """(bits per weight, MB) over every linear matrix of a PreparedModel as stored."""
    n = sum(m.shape[0] * m.shape[1] for m in model.matrices())
    stored = model.weight_bytes()
    return 8 * stored / n, stored / 1e6


def measure(model, tokenizer, text: str, ctx: int, max_chunks=None, threads=None) -> float:
    """Perplexity of ``text`` under a PreparedModel (tmac.model.generate.perplexity)."""
    from tmac.model.generate import perplexity
    from tmac.model.runtime import Runtime

    ids = tokenizer.encode(text)
    if max_chunks:
        ids = ids[:max_chunks * ctx]
    runtime = Runtime(model, max_ctx=ctx, max_seq=ctx, threads=threads)
    return perplexity(runtime, ids, ctx).perplexity


def point(label, kind, model, tokenizer, text, ctx, max_chunks, threads, seconds) -> Point:
    import time

    start = time.perf_counter()
    ppl = measure(model, tokenizer, text, ctx, max_chunks, threads)
    bpw, mb = bits_of(model)
    return Point(label, kind, bpw, mb, ppl, seconds + time.perf_counter() - start)


def plot(points, path, title):
    """Perplexity (log) against bits per weight, one series per kind (needs matplotlib)."""
    from tmac.extras import MissingExtra, hint

    try:
        import matplotlib
    except ImportError as error:
        raise MissingExtra(hint("fp4", "--plot")) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    f32 = [p for p in points if p.kind == "float"]
    kinds = [k for k in dict.fromkeys(p.kind for p in points) if k != "float"]
    for kind in kinds:
        series = sorted((p for p in points if p.kind == kind), key=lambda p: p.bits_per_weight)
        style = "s" if kind == "gguf" else "o-"
        ax.plot([p.bits_per_weight for p in series], [p.perplexity for p in series], style,
                label=kind)
        if kind == "gguf":
            for p in series:
                ax.annotate(p.label, (p.bits_per_weight, p.perplexity), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
    for p in f32:
        ax.axhline(p.perplexity, color="gray", linestyle="--", linewidth=1,
                   label=f"float32 ({p.perplexity:.2f})")
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight (every linear matrix and the head, as stored)")
    ax.set_ylabel("perplexity")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
