"""``tmac quantize MODEL --format w3 --fit gptq -o OUT``: fit once, save, run from the file.

The saved model (tmac.model.modelfile) holds the weights at their packed size with the
tokenizer and configuration; every model command opens it with ``--model OUT``."""


def add_parser(subparsers):
    from tmac.model.cli import add_fit_arguments
    from tmac.model.formats import FORMATS

    p = subparsers.add_parser("quantize", help="quantize a GGUF model into a tmac format once "
                                               "(GPTQ, HQQ, ...) and save it; --model OUT runs it")
    p.add_argument("model", help="a GGUF file or a fetched model name (e.g. smollm2)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="the model file to write (open it with --model OUT)")
    p.add_argument("--format", default="w4", choices=[f for f in FORMATS if f not in ("native", "f32")],
                   metavar="FORMAT", help="weight format (default w4); one of w8..w1, asym8.., "
                                          "sym8.., ternary, m0e4, e2m1")
    add_fit_arguments(p)
    p.add_argument("--bpw", type=float, default=None, metavar="BITS",
                   help="a bits-per-weight budget over every matrix and the head (codes, "
                        "scales and offsets counted): each matrix gets its width, 2..8 at "
                        "--group-size, from its measured sensitivity (--format must be w1..w8; "
                        "docs/model.md)")
    p.add_argument("--min-bits", type=int, default=None, metavar="B",
                   help="with --bpw: the narrowest width a matrix may get (default 3: 2-bit "
                        "matrices compound; docs/quality.md)")
    p.add_argument("--no-measure", action="store_true",
                   help="skip measuring the model's perplexity against float32 on the shipped "
                        "text (kept in OUT; tmac generate warns when it is poor)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args):
    import time
    from pathlib import Path

    from tmac.model import fetch, formats, loader, mix, modelfile, qualitymap
    from tmac.model.cli import progress_bar, say
    from tmac.model.formats import ModelFormat
    from tmac.model.runtime import prepare
    from tmac.model.tokenizer import GGUFTokenizer

    loader.require_extra()
    fmt = formats.parse(args.format, args.group_size, args.sym, head=args.head, fit=args.fit)
    out = Path(args.output)
    if out.exists() and not args.force:
        raise ValueError(f"--output: {out} exists; pass --force to overwrite it")
    if args.calibration is not None and fmt.fit != "gptq" and args.bpw is None:
        raise ValueError("--calibration is only used by --fit gptq and --bpw")
    if args.min_bits is not None and args.bpw is None:
        raise ValueError("--min-bits is only used with --bpw")
    if args.bpw is not None:
        if fmt.scheme != "affine":
            raise ValueError(f"--bpw mixes widths of w1..w8 (affine); --format {args.format} "
                             f"is not one")
        if not 1 < args.bpw <= 64:
            raise ValueError(f"--bpw must be a number of bits per weight in (1, 64], got "
                             f"{args.bpw:g}")
    path = fetch.resolve(args.model)
    if modelfile.is_model_file(path):
        raise ValueError(f"model: {path} is already a quantized tmac model; quantize its GGUF")
    started = time.perf_counter()
    g = loader.load(path)
    needs_text = fmt.fit == "gptq" or args.bpw is not None
    ids = calibration_ids(args, path, g) if needs_text else None
    plan = None
    if args.bpw is not None:
        plan = mix.plan_for_model(path, g.weights, ids, args.bpw, fmt.group_size,
                                  min_bits=args.min_bits or mix.MIN_BITS,
                                  progress=progress_bar("measuring each matrix's sensitivity",
                                                        args.quiet))
        say(f"plan: {plan.bits_per_weight():.3f} bits/weight, widths by matrix kind "
            f"{plan.widths_by_kind()}, predicted NLL increase {plan.predicted_cost():.4f}")
        fmt = ModelFormat("mix", max(plan.bits.values()), fmt.group_size, "affine", fit=fmt.fit,
                          mix=args.bpw)
    say(f"quantizing {path.name} to {fmt.label} ...")
    prepared = prepare(g.weights, fmt, calibration=ids if fmt.fit == "gptq" else None,
                       matrix_formats=plan.formats(fmt.fit) if plan else None,
                       progress=progress_bar(f"quantizing to {fmt.name}", args.quiet))
    if plan is not None:
        prepared.notes["plan"] = plan.as_dict()
    if not args.no_measure:
        prepared.notes["quality"] = measure_quality(g.weights, prepared,
                                                    GGUFTokenizer.from_metadata(g.metadata))
        q = prepared.notes["quality"]
        say(f"perplexity on {q['text']} (ctx {q['ctx']}): {q['perplexity']:.4f}, "
            f"{q['perplexity'] / q['f32']:.3f}x float32 ({q['f32']:.4f})")
    modelfile.save(out, prepared, g.metadata, source=path.name)
    seconds = time.perf_counter() - started
    bits, mb = qualitymap.bits_of(prepared)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB ({mb:.1f} MB of linear weights, "
          f"{bits:.2f} bits/weight), {fmt.label}, {seconds:.0f} s")
    print(f"run it: tmac generate --model {out}   ·   tmac perplexity --model {out}")
    return 0


QUALITY_CTX = 256


def calibration_ids(args, path, g):
    """(S, T) token ids: ``--calibration TEXT`` cut into sequences, else the model's own
    samples (cached; tmac.model.calibration)."""
    from pathlib import Path

    from tmac.model.calibration import from_text, self_generated
    from tmac.model.cli import progress_bar
    from tmac.model.tokenizer import GGUFTokenizer

    if args.calibration is None:
        return self_generated(path, progress=progress_bar("sampling calibration text",
                                                          args.quiet))
    text = Path(args.calibration).read_text(encoding="utf-8")
    return from_text(GGUFTokenizer.from_metadata(g.metadata), text,
                     where=f"--calibration {args.calibration}")


def measure_quality(weights, prepared, tokenizer) -> dict:
    """Perplexity of ``prepared`` and of the float32 weights on the shipped default text
    (llama.cpp's method, ctx ``QUALITY_CTX``): the record ``tmac generate`` checks."""
    from tmac.model import qualitymap, texts
    from tmac.model.formats import parse
    from tmac.model.runtime import prepare

    ctx = min(QUALITY_CTX, weights.config.context_length)
    text = texts.read()
    return {"perplexity": qualitymap.measure(prepared, tokenizer, text, ctx),
            "f32": qualitymap.measure(prepare(weights, parse("f32")), tokenizer, text, ctx),
            "text": texts.path().name, "ctx": ctx}
