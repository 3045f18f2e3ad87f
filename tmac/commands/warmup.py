"""``tmac warmup``: compile (or load from the on-disk cache) every kernel this CPU uses."""


def add_parser(subparsers):
    p = subparsers.add_parser("warmup", help="precompile every kernel for this CPU (Numba cache)")
    p.add_argument("--isa", default=None, help="warm up this path instead of the best one")
    p.set_defaults(run=run)


def run(args):
    import time

    from tmac import kernels

    start = time.perf_counter()
    paths = kernels.warmup(args.isa)
    for op, path in paths.items():
        print(f"{op}: {path}")
    print(f"ready in {time.perf_counter() - start:.1f} s")
    return 0
