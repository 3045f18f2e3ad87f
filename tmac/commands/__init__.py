"""Subcommands of the ``tmac`` command line, one module each.

A module here defines ``add_parser(subparsers)``, which adds its subparser and sets
``run=function(args) -> exit code`` as a default. ``tmac.cli`` discovers the modules, so adding
a command means adding a file. Heavy imports belong inside the run function.
"""


def positive_int(text):
    """argparse type: an int >= 1 (bad values exit with code 2 and a message naming the option)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
