"""``tmac tune``: search tile sizes per (CPU, shape, bits, config) and cache them (tmac.tune)."""


def add_parser(subparsers):
    from tmac import tune

    p = subparsers.add_parser("tune", help="search tiles per parallel task for each shape and cache "
                                           "the best in the user cache directory")
    tune.add_arguments(p)
    p.set_defaults(run=run)


def run(args):
    from tmac import tune

    tune.run(args)
    return 0
