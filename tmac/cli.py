"""The ``tmac`` command line. Each subcommand is a small function; heavy imports happen inside it."""

import argparse
import sys


def _add_demo(subparsers):
    p = subparsers.add_parser("demo", help="quantize a random matrix at 1-4 bits and ternary; "
                                           "show error against float and time against numpy")
    p.add_argument("--m", type=int, default=4096, help="rows of the weight matrix (default 4096)")
    p.add_argument("--k", type=int, default=4096, help="columns of the weight matrix (default 4096)")
    p.add_argument("--group-size", type=int, default=128, help="weight group size (default 128)")
    p.add_argument("--backend", default="auto", help="auto, reference, or a kernel backend")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per row (median)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_run_demo)


def _run_demo(args):
    from tmac.demo import run_demo

    return run_demo(m=args.m, k=args.k, group_size=args.group_size, backend=args.backend,
                    repeats=args.repeats, seed=args.seed)


COMMANDS = [_add_demo]


def build_parser():
    parser = argparse.ArgumentParser(prog="tmac", description="Low-bit matrix multiplication "
                                     "by table lookup (T-MAC) on CPUs.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return args.run(args) or 0
    except (ValueError, OSError) as error:
        print(f"tmac {args.command}: error: {error}", file=sys.stderr)
        return 2
