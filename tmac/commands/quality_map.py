"""``tmac quality-map``: perplexity against bits per weight for every fit, width, mix and file.

Every point is measured the same way on the same text (tmac.model.qualitymap); fitted weights
come from the prepared cache when present, so a second run only measures."""

from tmac.commands import positive_int


def add_parser(subparsers):
    from tmac.model.formats import fit_choices

    p = subparsers.add_parser("quality-map", help="perplexity against bits per weight: float32, "
                                                  "the file's own types, other GGUF files, each "
                                                  "fit at each width, and mixes under budgets")
    p.add_argument("text", nargs="?", default=None,
                   help="a UTF-8 text file or a shipped text's name (default "
                        "declaration_gettysburg; tmac_docs: tmac's documentation)")
    p.add_argument("--model", default="smollm2", help="a GGUF file or a fetched model name")
    p.add_argument("--widths", type=int, nargs="+", default=[4, 3, 2], metavar="B",
                   choices=range(1, 9),
                   help="widths of the uniform w1..w8 points (default 4 3 2)")
    p.add_argument("--group-sizes", type=positive_int, nargs="+", default=[32], metavar="G",
                   help="group sizes of the uniform points (default 32)")
    p.add_argument("--fits", nargs="+", default=["lsq", "hqq", "gptq"], metavar="FIT",
                   choices=fit_choices(),
                   help="fits of the uniform points (default lsq hqq gptq; gptq takes minutes "
                        "per width, once: cached)")
    p.add_argument("--bpw", type=float, nargs="*", default=[], metavar="BITS",
                   help="bits-per-weight budgets of mixed points (tmac quantize --bpw), fitted "
                        "with the last of --fits")
    p.add_argument("--min-bits", type=int, default=3, metavar="B",
                   help="the narrowest width a mix may give a matrix (default 3)")
    p.add_argument("--files", nargs="*", default=[], metavar="GGUF",
                   help="other GGUF files of the same weights, run in their own types (e.g. "
                        "tmac convert's Q4_0, Q5_0, Q8_0)")
    p.add_argument("--ctx", type=positive_int, default=256, help="tokens per chunk (default 256)")
    p.add_argument("--max-chunks", type=positive_int, default=None,
                   help="score at most this many chunks")
    p.add_argument("--threads", type=positive_int, default=None, help="Numba threads")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="draw the map (matplotlib: the fp4 or notebooks extra)")
    p.add_argument("-o", "--output", choices=("table", "markdown", "json"), default="table")
    p.set_defaults(run=run)


def run(args):
    import json
    import time
    from dataclasses import asdict
    from pathlib import Path

    from rich.console import Console

    from tmac.display import Report
    from tmac.model import calibration, fetch, formats, loader, mix, qualitymap, store, texts
    from tmac.model.cli import progress_bar, say
    from tmac.model.runtime import prepare

    loader.require_extra()
    source = texts.resolve(args.text, "text")
    text = source.read_text(encoding="utf-8")
    quiet = args.output != "table"
    points = []

    def add(label, kind, model_name, fmt, started=None):
        started = time.perf_counter() if started is None else started
        om = store.open_model(model_name, fmt, progress=progress_bar(f"preparing {label}", quiet))
        points.append(qualitymap.point(label, kind, om.model, om.tokenizer, text, args.ctx,
                                       args.max_chunks, args.threads,
                                       time.perf_counter() - started))
        if not quiet:
            p = points[-1]
            say(f"{label}: {p.bits_per_weight:.2f} bits/weight, perplexity {p.perplexity:.4f}")
        return om

    om = add("float32", "float", args.model, formats.parse("f32"))
    tokenizer = om.tokenizer
    add("native", "gguf", args.model, formats.parse("native"))
    for f in args.files:
        add(Path(f).stem, "gguf", f, formats.parse("native"))
    for fit in args.fits:
        for g in args.group_sizes:
            for b in args.widths:
                add(f"w{b} g{g} {fit}", fit, args.model, formats.parse(f"w{b}", g, fit=fit))
    if args.bpw:
        path = fetch.resolve(args.model)
        g = loader.load(path)
        ids = calibration.self_generated(path, progress=progress_bar("calibration", quiet))
        fit = args.fits[-1] if args.fits else "lsq"
        for budget in args.bpw:
            started = time.perf_counter()
            plan = mix.plan_for_model(path, g.weights, ids, budget, args.group_sizes[0],
                                      min_bits=args.min_bits,
                                      progress=progress_bar("sensitivity", quiet))
            fmt = formats.ModelFormat("mix", max(plan.bits.values()), args.group_sizes[0],
                                      "affine", fit=fit, mix=budget)
            model = prepare(g.weights, fmt, calibration=ids if fit == "gptq" else None,
                            matrix_formats=plan.formats(fit),
                            progress=progress_bar(f"fitting mix {budget:g}", quiet))
            points.append(qualitymap.point(f"mix {budget:g} {fit}", f"mix {fit}", model,
                                           tokenizer, text, args.ctx, args.max_chunks,
                                           args.threads, time.perf_counter() - started))
    f32 = points[0].perplexity
    title = (f"{Path(str(om.path)).name}: perplexity on {source.name} (ctx {args.ctx}"
             f"{f', {args.max_chunks} chunks' if args.max_chunks else ''}) against bits per weight")
    if args.plot:
        qualitymap.plot(points, args.plot, title)
    if args.output == "json":
        print(json.dumps({"title": title, "points": [asdict(p) for p in points]}, indent=1))
        return 0
    rows = [{**asdict(p), "vs": p.perplexity / f32} for p in points]
    report = Report(title, [("label", "model", "{}"), ("bits_per_weight", "bits/weight", "{:.2f}"),
                            ("weight_mb", "MB", "{:.1f}"), ("perplexity", "perplexity", "{:.4f}"),
                            ("vs", "vs f32", "{:.3f}"), ("seconds", "s", "{:.0f}")], rows)
    if args.output == "markdown":
        print(report.to_markdown())
    else:
        Console().print(report)
    return 0
