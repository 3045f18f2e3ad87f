"""``tmac info``: the CPU features Numba compiles for and the kernel path each op runs."""


def add_parser(subparsers):
    p = subparsers.add_parser("info", help="CPU features, available ISA paths and the path per op")
    p.add_argument("--isa", default=None, help="show the choice as if this path were requested")
    p.set_defaults(run=run)


def run(args):
    from rich.console import Console
    from rich.table import Table

    import tmac
    from tmac.kernels import dispatch

    info = dispatch.info(args.isa)
    console = Console()
    console.print(f"tmac {tmac.__version__} on CPU [bold]{info['cpu']}[/bold]; "
                  f"ISA paths available: {', '.join(info['available'])}"
                  + (f"; requested: {info['requested']}" if info["requested"] else ""))
    features = Table(title="CPU features (as Numba compiles for them)")
    features.add_column("feature")
    features.add_column("present")
    for name, present in info["features"].items():
        features.add_row(name, "yes" if present else "no")
    console.print(features)
    ops = Table(title="kernel path per op")
    ops.add_column("op")
    ops.add_column("path")
    for op, path in info["ops"].items():
        ops.add_row(op, path)
    console.print(ops)
    console.print(info["note"])
    return 0
