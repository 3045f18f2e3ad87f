"""``tmac generate --model smollm2 --format w4 "prompt"``: stream text, report tokens/s."""


def add_parser(subparsers):
    from tmac.model.cli import add_model_arguments

    p = subparsers.add_parser("generate", help="generate text with a GGUF llama model on tmac's "
                                               "kernels (streams; reports prefill/decode tokens/s)")
    p.add_argument("prompt", help="the prompt text")
    add_model_arguments(p)
    p.add_argument("--chat", action="store_true",
                   help="wrap the prompt in the model's chat template (instruct models)")
    p.add_argument("--system", default=None, help="system message for --chat")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens to generate at most (128)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0, help="sample from the k most likely (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--ctx", type=int, default=None,
                   help="context to allocate (default: prompt + max tokens)")
    p.set_defaults(run=run)


def run(args):
    import sys

    from tmac.model.cli import open_model, say
    from tmac.model.generate import Sampling, generate
    from tmac.model.runtime import Runtime

    if args.max_tokens < 1:
        raise ValueError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    sampling = Sampling(args.temperature, args.top_k, args.top_p, args.seed)
    om, fmt = open_model(args)
    warning = quality_warning(om.model.notes.get("quality"))
    if warning:
        say(warning)
    tok = om.tokenizer
    text = args.prompt
    if args.chat:
        messages = ([{"role": "system", "content": args.system}] if args.system else [])
        text = tok.apply_chat_template(messages + [{"role": "user", "content": args.prompt}])
    ids = tok.encode(text)
    limit = om.model.config.context_length
    ctx = min(args.ctx or len(ids) + args.max_tokens, limit)
    if len(ids) >= ctx:
        raise ValueError(f"the prompt has {len(ids)} tokens; the context holds {ctx}")
    rt = Runtime(om.model, max_ctx=ctx, max_seq=min(len(ids), 512), matmul=args.matmul,
                 lut=args.lut,
                 threads=args.threads)
    rt.forward(ids[:1])                 # compile / load the kernels before timing
    if not args.chat:
        sys.stdout.write(args.prompt)
    result = generate(rt, tok, ids, args.max_tokens, sampling,
                      on_text=lambda piece: (sys.stdout.write(piece), sys.stdout.flush()))
    sys.stdout.write("\n")
    sys.stdout.flush()
    path = "fused" if rt.fused else "per-layer"
    say(f"[{fmt.label}, {rt.matmul} {path}, threads={args.threads or 'all'}] "
        f"prefill {result.prompt_tokens} tokens: {result.prefill_tps:.1f} tok/s | "
        f"decode {result.decode_tokens} tokens: {result.decode_tps:.1f} tok/s | stop: {result.stopped}")
    return 0


POOR_RATIO = 1.5        # a measured perplexity this many times float32's: the text will be poor


def quality_warning(quality) -> str | None:
    """One line when a saved model's measured perplexity (``tmac quantize``) is poor."""
    if not quality or not quality.get("f32") or not quality.get("perplexity"):
        return None
    ratio = quality["perplexity"] / quality["f32"]
    if ratio < POOR_RATIO:
        return None
    return (f"warning: this model's perplexity was measured at {ratio:.2f}x its float32 weights' "
            f"({quality['perplexity']:.4g} vs {quality['f32']:.4g} on {quality.get('text', '?')}"
            f"): expect poor text; more bits or --fit gptq help (docs/model.md)")
