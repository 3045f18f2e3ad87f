"""``tmac bench model --vs-llamacpp``: tmac and llama.cpp on the same GGUF file, side by side.

Per thread count, both engines run the same prefill (``--prompt`` tokens, from an empty cache)
and decode (``--decode`` one-token steps) on the same token ids, taking turns run by run; each
figure is the median of ``--repeat`` runs after a warm-up run. Beside the speeds stand the
weight bytes each engine reads per decoded token, the GB/s that decode rate implies, and the
machine's read bandwidth measured in the same run (tmac.kernels.bandwidth): decode of a small
model is memory-bound, so "% of bandwidth" says how close an engine is to the ceiling. Each
engine's perplexity on the shipped text (same ids, llama.cpp's method) stands beside its speed,
with its ratio to the f32 model dequantized from the same file.
"""
from __future__ import annotations

import json
import sys
from collections import Counter

from tmac.model.speed import measure

COLUMNS = ("engine", "weights", "threads", "prefill_tps", "decode_tps", "prefill_ratio",
           "decode_ratio", "mb_per_token", "decode_gbs", "read_gbs", "pct_of_bandwidth",
           "perplexity", "vs_f32", "bytes_per_token")
HEADER = ("| engine | weights | threads | prefill pp{p} tok/s | decode tg{d} tok/s | prefill x | "
          "decode x | MB/token | decode GB/s | read GB/s | % of read | perplexity | vs f32 |")


def file_weights(path):
    """(bytes llama.cpp reads per decoded token, a label of the weight types) for a GGUF file:
    every matrix but the token embedding, which is only looked up (unless it is the tied head)."""
    import gguf

    tensors = gguf.GGUFReader(str(path)).tensors
    tied = not any(t.name == "output.weight" for t in tensors)
    read = [t for t in tensors if len(t.shape) >= 2 and (tied or t.name != "token_embd.weight")]
    head = next(t for t in read if t.name in ("output.weight", "token_embd.weight"))
    body = Counter(t.tensor_type.name for t in read if t is not head)
    label = "+".join(kind for kind, _ in body.most_common()) + f", head {head.tensor_type.name}"
    return sum(int(t.n_bytes) for t in read), label


def _path(rt):
    """'avx512, fused' or 'avx2, per-layer': the kernel path a tmac runtime takes."""
    from tmac.kernels import dispatch

    return f"{dispatch.choose('lut_int8', rt.isa)}, {'fused' if rt.fused else 'per-layer'}"


def _perplexity(rt, ids, ctx):
    from tmac.model.generate import perplexity

    return perplexity(rt, ids, ctx).perplexity


def run(args):
    from tmac.kernels.bandwidth import read_bandwidth
    from tmac.model import fetch, llamacpp, loader, texts
    from tmac.model.cli import open_model, say
    from tmac.model.runtime import Runtime

    loader.require_extra()
    llamacpp.require()
    path = fetch.resolve(args.model)
    file_bytes, file_label = file_weights(path)
    opened = [open_model(args, name, quiet=True) for name in args.formats or ["native"]]
    say(f"{path.name}: {file_label}; llama.cpp is {llamacpp.version()}")
    vocab = opened[0][0].model.config.vocab_size
    prompt = [(i * 7919 + 13) % vocab for i in range(args.prompt)]
    ppl = {}
    if not args.no_perplexity:
        ids = opened[0][0].tokenizer.encode(texts.read())
        threads, ctx = max(args.thread_counts), args.ppl_ctx
        f32, _ = open_model(args, "f32", quiet=True)
        ppl["f32"] = _perplexity(Runtime(f32.model, max_ctx=ctx, max_seq=ctx, threads=threads),
                                 ids, ctx)
        for om, fmt in opened:
            ppl[fmt.label] = _perplexity(Runtime(om.model, max_ctx=ctx, max_seq=ctx,
                                                 threads=threads), ids, ctx)
        ppl["llama.cpp"] = _perplexity(llamacpp.LlamaCppRuntime(path, ctx, threads,
                                                                 all_logits=True), ids, ctx)
    if args.output == "md":
        print(HEADER.format(p=args.prompt, d=args.decode))
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    rows = []
    for threads in args.thread_counts:
        bandwidth = read_bandwidth(threads)
        n_ctx = args.prompt + args.decode + 1
        engines = []
        for om, fmt in opened:
            rt = Runtime(om.model, max_ctx=n_ctx, max_seq=args.prompt, threads=threads)
            weights = file_label if fmt.name == "native" else fmt.label
            engines.append((f"tmac ({_path(rt)})", weights, om.model.weight_bytes(), fmt.label, rt))
        engines.append(("llama.cpp", file_label, file_bytes, "llama.cpp",
                        llamacpp.LlamaCppRuntime(path, n_ctx, threads)))
        speeds = measure([e[-1] for e in engines], prompt, args.decode, args.repeat)
        base_pre, base_dec = speeds[-1]
        for (engine, weights, nbytes, key, _), (pre, dec) in zip(engines, speeds):
            row = dict(zip(COLUMNS, (
                engine, weights, threads, round(pre, 1), round(dec, 1),
                round(pre / base_pre, 2), round(dec / base_dec, 2), round(nbytes / 1e6, 1),
                round(dec * nbytes / 1e9, 2), round(bandwidth / 1e9, 2),
                round(100 * dec * nbytes / bandwidth, 1),
                round(ppl[key], 4) if ppl else None,
                round(ppl[key] / ppl["f32"], 4) if ppl else None, nbytes)))
            rows.append(row)
            if args.output == "md":
                cells = ["-" if v is None else str(v) for v in list(row.values())[:-1]]
                print("| " + " | ".join(cells) + " |", flush=True)
            else:
                say(json.dumps(row))
    if args.output == "json":
        print(json.dumps({"command": " ".join(sys.argv), "model": str(path),
                          "llama_cpp": llamacpp.version(),
                          "f32_perplexity": ppl.get("f32"), "rows": rows}, indent=1))
    return 0
