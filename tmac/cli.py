"""The ``tmac`` command line: one subcommand per module of ``tmac.commands``."""

import argparse
import importlib
import pkgutil
import sys

import tmac.commands
from tmac.extras import MissingExtra


def build_parser():
    parser = argparse.ArgumentParser(prog="tmac", description="Low-bit matrix multiplication "
                                     "by table lookup (T-MAC) on CPUs.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in sorted(m.name for m in pkgutil.iter_modules(tmac.commands.__path__)):
        importlib.import_module(f"tmac.commands.{module}").add_parser(subparsers)
    return parser


def main(argv=None):
    """Run the command; returns its exit code (2 with a one-line message for bad input)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return args.run(args) or 0
    except (ValueError, OSError, MissingExtra) as error:
        print(f"tmac {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tmac {args.command}: interrupted", file=sys.stderr)
        return 130
