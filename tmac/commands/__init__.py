"""Subcommands of the ``tmac`` command line, one module each.

A module here defines ``add_parser(subparsers)``, which adds its subparser and sets
``run=function(args) -> exit code`` as a default. ``tmac.cli`` discovers the modules, so adding
a command means adding a file. Heavy imports belong inside the run function.
"""
