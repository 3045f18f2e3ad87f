"""``tmac demo``: the main job on built-in defaults (see tmac.demo)."""


def add_parser(subparsers):
    p = subparsers.add_parser("demo", help="quantize a random matrix at 1-4 bits and ternary; "
                                           "show error against float and time against numpy")
    p.add_argument("--m", type=int, default=4096, help="rows of the weight matrix (default 4096)")
    p.add_argument("--k", type=int, default=4096, help="columns of the weight matrix (default 4096)")
    p.add_argument("--group-size", type=int, default=128, help="weight group size (default 128)")
    p.add_argument("--backend", default="auto", help="auto, reference, or a kernel backend")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per row (median)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="threads for tmac and numpy (default 1)")
    p.set_defaults(run=run)


def run(args):
    from tmac.demo import run_demo

    return run_demo(m=args.m, k=args.k, group_size=args.group_size, backend=args.backend,
                    repeats=args.repeats, seed=args.seed, threads=args.threads)
