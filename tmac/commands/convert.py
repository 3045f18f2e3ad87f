"""``tmac convert MODEL --to Q4_0 -o OUT.gguf``: the model's linear weights rewritten in another
llama.cpp block type (see tmac.model.convert), so that llama.cpp and tmac run the same file."""


def add_parser(subparsers):
    from tmac.model.convert import WRITABLE

    p = subparsers.add_parser("convert", help="write a GGUF model with its linear weights in "
                                              "another llama.cpp type (the gguf package's "
                                              "quantizers: llama.cpp's bytes)")
    p.add_argument("model", help="a GGUF file or a fetched model name (e.g. smollm2)")
    p.add_argument("--to", required=True, metavar="TYPE", type=str.upper,
                   help=f"type of the linear weights: one of {', '.join(WRITABLE)}")
    p.add_argument("-o", "--output", required=True, metavar="OUT.gguf", help="the file to write")
    p.add_argument("--head", default=None, metavar="TYPE", type=str.upper,
                   help="type of the output head (default: its own type if 8 bits or wider, "
                        "else Q8_0)")
    p.add_argument("--force", action="store_true", help="overwrite OUT.gguf if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args):
    from collections import Counter
    from pathlib import Path

    from tmac.model import convert, loader
    from tmac.model.cli import progress_bar

    loader.require_extra()
    written = convert.convert(args.model, args.to, args.output, head=args.head, force=args.force,
                              progress=progress_bar(f"converting to {args.to}", args.quiet))
    counts = ", ".join(f"{n} {kind}" for kind, n in Counter(written.values()).most_common())
    size = Path(args.output).stat().st_size
    print(f"{args.output}: {size / 1e6:.1f} MB, tensors {counts}")
    return 0
