"""``tmac bench model``: decode and prefill tokens/s of a real model per format and thread count.

Measured like llama.cpp's ``llama-bench``: prefill = one forward of ``--prompt`` tokens (pp64)
from an empty cache; decode = ``--decode`` successive one-token forwards (tg128) after one
token of context. Median of ``--repeat`` runs, after a warm-up run (compilation, caches).
Tokens are fixed ids (no sampling cost); the weights stay in memory (the model's 70-150 MB
exceed the L2 cache, so every token reads them from L3 or main memory).

Speed never stands without quality: each format's perplexity on the shipped text
(tmac.model.texts, llama.cpp's method, ``--ppl-ctx`` tokens per chunk) is printed beside its
speed, with its ratio to the f32 model's (measured once per run); ``--no-perplexity`` skips it.
"""
from __future__ import annotations

import json
import sys

from tmac.model.speed import measure

DEFAULT_FORMATS = ("native", "w4", "w3", "w2", "asym4", "ternary", "m0e4", "w4:dequant", "f32")


def add_parser(subparsers):
    """The ``model`` mode of ``tmac bench`` (added by tmac.commands.bench)."""
    from tmac.model.cli import add_model_arguments

    p = subparsers.add_parser("model", help="tokens/s of a real model (default smollm2) for each "
                                            "format, 1 and 2 threads, and the dequant baseline")
    add_model_arguments(p, formats=False)
    p.set_defaults(threads=None)
    p.add_argument("--formats", nargs="+", default=None,
                   help="formats; NAME:dequant runs the dequantize-then-multiply baseline "
                        f"(default: {' '.join(DEFAULT_FORMATS)}; with --vs-llamacpp: native)")
    p.add_argument("--vs-llamacpp", action="store_true",
                   help="llama.cpp on the same GGUF file beside tmac, with the machine's read "
                        "bandwidth (needs the llamacpp extra)")
    p.add_argument("--thread-counts", nargs="+", type=int, default=[1, 2], help="default 1 2")
    p.add_argument("--prompt", type=int, default=64, help="prefill tokens (default 64)")
    p.add_argument("--decode", type=int, default=128, help="decode tokens (default 128)")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure, median (default 3)")
    p.add_argument("--ppl-ctx", type=int, default=256, help="perplexity chunk (default 256)")
    p.add_argument("--no-perplexity", action="store_true", help="speed only")
    p.add_argument("-o", "--output", choices=["md", "json"], default="md")
    p.set_defaults(run=run)


def quality(args, om, matmul):
    """Perplexity of the shipped text under this model and matmul (None when skipped)."""
    if args.no_perplexity:
        return None
    from tmac.model import texts
    from tmac.model.generate import perplexity
    from tmac.model.runtime import Runtime

    ids = om.tokenizer.encode(texts.read())
    rt = Runtime(om.model, max_ctx=args.ppl_ctx, max_seq=args.ppl_ctx,
                 matmul="lut" if matmul == "float" else matmul, threads=max(args.thread_counts))
    return perplexity(rt, ids, args.ppl_ctx).perplexity


def run(args):
    if args.vs_llamacpp:
        from tmac.model import versus

        return versus.run(args)
    import numpy as np

    from tmac.model.cli import open_model, say
    from tmac.model.runtime import Runtime

    rows = []
    header = ("| format | matmul | path | bits/weight | weights MB | threads | prefill pp{p} tok/s "
              "| decode tg{d} tok/s | perplexity | vs f32 |").format(p=args.prompt, d=args.decode)
    if args.output == "md":
        print(header)
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    from tmac.model import fetch, modelfile

    saved = modelfile.is_model_file(fetch.resolve(args.model))     # tmac quantize's file
    f32_ppl = None
    if not args.no_perplexity and not saved:
        om, _ = open_model(args, "f32", quiet=True)
        f32_ppl = quality(args, om, "float")
    for spec in args.formats or (["native"] if saved else DEFAULT_FORMATS):
        name, _, matmul = spec.partition(":")
        matmul = matmul or ("float" if name == "f32" else args.matmul)
        om, fmt = open_model(args, name, quiet=args.output == "json")
        vocab = om.model.config.vocab_size
        prompt = (np.arange(args.prompt) * 7919 + 13) % vocab
        mats = [om.model.head] + [l[k] for l in om.model.layers
                                  for k in ("qkv", "o", "gate_up", "down")]
        n_weights = sum(m.shape[0] * m.shape[1] for m in mats)
        nbytes = om.model.weight_bytes()
        ppl = quality(args, om, matmul)
        record = om.model.notes.get("quality", {})    # float32's, measured when it was saved
        if saved and f32_ppl is None and record.get("ctx") == args.ppl_ctx:
            f32_ppl = record.get("f32")
        for threads in args.thread_counts:
            rt = Runtime(om.model, max_ctx=args.prompt + args.decode + 1,
                         max_seq=args.prompt, matmul="lut" if matmul == "float" else matmul,
                         threads=threads)
            (pre, dec), = measure([rt], prompt, args.decode, args.repeat)
            row = {"format": fmt.label, "matmul": matmul,
                   "path": "fused" if rt.fused else "per-layer",
                   "bits_per_weight": round(8 * nbytes / n_weights, 3),
                   "weight_mb": round(nbytes / 1e6, 1), "threads": threads,
                   "prefill_tps": round(pre, 1), "decode_tps": round(dec, 1),
                   "perplexity": None if ppl is None else round(ppl, 4),
                   "vs_f32": None if ppl is None or f32_ppl is None else round(ppl / f32_ppl, 4)}
            rows.append(row)
            if args.output == "md":
                quality_cells = ("- | -" if ppl is None else f"{row['perplexity']} | "
                                 + ("-" if row["vs_f32"] is None else f"{row['vs_f32']:.4f}x"))
                print(f"| {row['format']} | {matmul} | {row['path']} | {row['bits_per_weight']} | "
                      f"{row['weight_mb']} | {threads} | {row['prefill_tps']} | "
                      f"{row['decode_tps']} | {quality_cells} |", flush=True)
            else:
                say(json.dumps(row))
    if args.output == "json":
        print(json.dumps({"command": " ".join(sys.argv), "f32_perplexity": f32_ppl, "rows": rows},
                         indent=1))
    return 0
