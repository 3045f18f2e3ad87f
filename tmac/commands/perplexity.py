"""``tmac perplexity --model smollm2 --format w4 --ctx 256 [FILE]``: last line is the number.

Without FILE the shipped public-domain text (tmac.model.texts) is scored."""

from tmac.commands import positive_int


def add_parser(subparsers):
    from tmac.model.cli import add_model_arguments

    p = subparsers.add_parser("perplexity", help="perplexity of a text file under a GGUF llama "
                                                 "model in a tmac format (llama.cpp's method)")
    p.add_argument("file", nargs="?", default=None,
                   help="a UTF-8 text file, or a shipped text's name (declaration_gettysburg, "
                        "the default: the Declaration of Independence and Gettysburg Address; "
                        "tmac_docs: tmac's documentation; tmac.model.texts)")
    add_model_arguments(p)
    p.add_argument("--ctx", type=int, default=256, help="tokens per chunk (default 256); the "
                                                        "second half of each chunk is scored")
    p.add_argument("--max-chunks", type=positive_int, default=None, help="score at most this many chunks")
    p.set_defaults(run=run)


def run(args):
    from tmac.model.cli import open_model, say
    from tmac.model.generate import perplexity
    from tmac.model.runtime import Runtime

    if args.ctx < 4:
        raise ValueError(f"--ctx must be >= 4, got {args.ctx}")
    from tmac.model import texts

    source = texts.resolve(args.file, "file")
    text = source.read_text(encoding="utf-8")
    om, fmt = open_model(args)
    ids = om.tokenizer.encode(text)
    if args.max_chunks:
        ids = ids[:args.max_chunks * args.ctx]
    rt = Runtime(om.model, max_ctx=args.ctx, max_seq=args.ctx, matmul=args.matmul,
                 lut=args.lut,
                 threads=args.threads)
    r = perplexity(rt, ids, args.ctx,
                   progress=lambda c, n, ppl: say(f"  chunk {c}/{n}: running perplexity {ppl:.4f}"))
    print(f"{source.name}: {len(ids)} tokens, {r.chunks} chunks of {args.ctx}, {r.scored} scored, "
          f"format {fmt.label}, {r.seconds:.1f} s")
    print(f"{r.perplexity:.4f}")
    return 0
