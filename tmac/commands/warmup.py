"""``tmac warmup``: compile (or load from the on-disk cache) every kernel this CPU uses."""


def add_parser(subparsers):
    from tmac.warmup import PARTS

    p = subparsers.add_parser("warmup", help="precompile every kernel for this CPU (Numba cache)")
    p.add_argument("--isa", default=None, help="warm up this path instead of the best one")
    p.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS),
                   help="which parts (default: all)")
    p.set_defaults(run=run)


def run(args):
    import time

    from tmac.warmup import warmup

    start = time.perf_counter()
    for what, path in warmup(args.only, args.isa).items():
        print(f"{what}: {path}")
    print(f"ready in {time.perf_counter() - start:.1f} s")
    return 0
