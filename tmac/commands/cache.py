"""``tmac cache``: what tmac stores on disk (prepared models, tune results, fetched models,
compiled kernels) with counts, sizes and paths; ``clear KIND``; ``limit SIZE`` for prepared
models, evicted least recently used first (see tmac.cache)."""

import argparse


def add_parser(subparsers):
    p = subparsers.add_parser(
        "cache", help="list what tmac stores (prepared, tune, fetched, kernels) with sizes; "
                      "clear one kind; limit the size of prepared models",
        description="Without an action: the listing. Fetched models are deleted only by name.")
    p.add_argument("--json", action="store_true", help="the listing as JSON")
    p.set_defaults(run=run)
    actions = p.add_subparsers(dest="action")
    listing = actions.add_parser("list", help="kinds, files, sizes, paths and the total (default)")
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                         help="the listing as JSON")
    clear = actions.add_parser("clear", help="delete one kind: prepared, calibration, tune, "
                                             "kernels, or fetched --name NAME")
    clear.add_argument("kind", choices=["prepared", "calibration", "tune", "kernels", "fetched"])
    clear.add_argument("--name", action="append", default=None,
                       help="a fetched model to delete (repeatable); required for fetched")
    limit = actions.add_parser("limit", help="show, or set, the size limit of prepared models "
                                             "(e.g. 500MB, 2GB; 'none' removes it)")
    limit.add_argument("size", nargs="?", default=None)


def run(args):
    return {"list": run_list, "clear": run_clear, "limit": run_limit}[args.action or "list"](args)


def _limit_text():
    from tmac import cache

    value, source = cache.limit()
    if value is None:
        return "prepared models: no size limit (tmac cache limit 500MB sets one)"
    return f"prepared models: limit {cache.human_size(value)} (from {source})"


def run_list(args):
    from tmac import cache

    rows = cache.entries()
    total_files, total_bytes = sum(e.count for e in rows), sum(e.size for e in rows)
    if args.json:
        import json

        value, source = cache.limit()
        print(json.dumps({"cache_dir": str(cache.cache_dir()), "entries": [e.as_dict() for e in rows],
                          "total_files": total_files, "total_bytes": total_bytes,
                          "prepared_limit_bytes": value, "prepared_limit_source": source}, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tmac cache: {cache.cache_dir()}")
    table.add_column("kind")
    table.add_column("files", justify="right")
    table.add_column("size", justify="right")
    table.add_column("path", overflow="fold")
    for e in rows:
        table.add_row(f"{e.kind} ({e.name})" if e.name else e.kind, str(e.count),
                      cache.human_size(e.size), e.location)
    table.add_section()
    table.add_row("total", str(total_files), cache.human_size(total_bytes), "")
    console = Console()
    console.print(table)
    console.print(_limit_text())
    return 0


def run_clear(args):
    from tmac import cache

    files, size = cache.clear(args.kind, args.name)
    what = f"fetched {', '.join(args.name)}" if args.kind == "fetched" else args.kind
    note = "; compiled again on first use" if args.kind == "kernels" and files else ""
    print(f"removed {files} files ({cache.human_size(size)}) of {what}{note}")
    return 0


def run_limit(args):
    import os

    from tmac import cache

    if args.size is not None:
        cache.set_limit(args.size)
        if os.environ.get(cache.LIMIT_ENV, "").strip():
            print(f"note: ${cache.LIMIT_ENV} is set and overrides the stored limit")
        removed = cache.evict()
        if removed:
            print(f"evicted {len(removed)} least recently used prepared files")
    print(_limit_text())
    print(f"prepared models now: {cache.human_size(sum(cache._size(f) for f in cache.prepared_files()))}")
    return 0
